"""Deleting a label (`store.retired_labels`): gone from the taxonomy and from every
labelling at once for readers, the stored labellings pruned afterwards in steps that never
overwrite a concurrent write, and the name free again once they are done."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from corrigo.client import CorrigoError
from corrigo.server.store import database, retired_labels
from corrigo.server.store.database import Sql
from corrigo.v1 import datasets_pb2
from corrigo.v1.comments_pb2 import AssignedLabels, Label
from corrigo.v1.datasets_pb2 import LabellingUpdate
from tests import correction_helpers as c
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

# More than one page of the pruning (retired_labels.PAGE).
COMMENTS = 2500


def _item(uid: str, assigned: tuple[str, ...], dismissed: tuple[str, ...] = ()) -> LabellingUpdate:
    return LabellingUpdate(
        comment_uid=uid,
        assigned=[Label(name=n, sentiment="positive") for n in assigned],
        dismissed=[Label(name=n, sentiment="positive") for n in dismissed],
    )


# comment index % 4 -> (assigned, dismissed)
_SHAPES = {
    0: (("A > x", "B"), ()),
    1: (("A",), ()),
    2: (("B",), ("A",)),
    3: (("B",), ()),
}
# The same labellings as readers see them once A is deleted (None: no labelling).
_WITHOUT_A: dict[int, tuple[list[str], list[str]] | None] = {
    0: (["B"], []),
    1: None,
    2: (["B"], []),
    3: (["B"], []),
}


async def _labelled(org: Org) -> tuple[str, str]:
    """A project (its name) whose dataset `ds` over source `mailbox` (its id) has
    COMMENTS comments labelled in the shapes of `_SHAPES` from the taxonomy A, A > x, B."""
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    await h.sync(
        org.admin, project.name, "mailbox", [h.comment(f"c{i:05d}", i) for i in range(COMMENTS)]
    )
    await org.admin.datasets.CreateLabelDefs(h.label_defs(project.name, ["A > x", "B"]))
    items = [_item(f"{src.id}.c{i:05d}", *_SHAPES[i % 4]) for i in range(COMMENTS)]
    await org.admin.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(owner=project.name, name="ds", labellings=items)
    )
    return project.name, src.id


async def _labelling(org: Org, owner: str, uid: str) -> datasets_pb2.LabellingResponse:
    return await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )


def _shown(answer: datasets_pb2.LabellingResponse) -> tuple[list[str], list[str]] | None:
    if not answer.HasField("updated_at"):
        return None
    return [a.name for a in answer.assigned], [d.name for d in answer.dismissed]


async def _export(org: Org, owner: str) -> list[Any]:
    """Every exported comment's (uid, has_annotations, assigned label names)."""
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    return [
        (
            c.comment.uid,
            c.comment.has_annotations,
            [label.name for label in c.annotations.labels.assigned],
        )
        for page in pages
        for c in page.comments
    ]


async def _stored_with(dataset_name: str, owner: str, label: str) -> int:
    """How many stored labellings of the dataset still name `label` (assigned or dismissed)."""
    rows = await database.fetch(
        Sql(
            "SELECT l.assigned, l.dismissed FROM labelling AS l "
            "JOIN dataset AS d ON d.id = l.dataset_id JOIN project AS p ON p.id = d.project_id "
            "WHERE p.name = ? AND d.name = ?"
        ),
        (owner, dataset_name),
    )
    return sum(
        any(
            x.name == label or x.name.startswith(label + " > ")
            for blob in row
            for x in AssignedLabels.FromString(bytes(blob)).assigned
        )
        for row in rows
    )


async def _retired(owner: str) -> list[int]:
    """The ids of the deleted labels of `owner`'s dataset `ds` still being pruned."""
    rows = await database.fetch(
        Sql(
            "SELECT r.id FROM label_retired AS r JOIN dataset AS d ON d.id = r.dataset_id "
            "JOIN project AS p ON p.id = d.project_id WHERE p.name = ? AND d.name = 'ds'"
        ),
        (owner,),
    )
    return [int(row[0]) for row in rows]


async def _pruned(ids: list[int]) -> None:
    """Wait until the pruning of the deleted labels `ids` is done."""
    assert ids
    marks = ", ".join("?" * len(ids))
    pending = Sql(f"SELECT COUNT(*) FROM purge WHERE kind = 'label' AND row_id IN ({marks})")
    deadline = time.monotonic() + 60
    while (await database.fetch(pending, ids))[0][0]:
        assert time.monotonic() < deadline, "a label's pruning did not finish"
        await asyncio.sleep(0.1)
    left = Sql(f"SELECT COUNT(*) FROM label_retired WHERE id IN ({marks})")
    assert (await database.fetch(left, ids))[0][0] == 0


@pytest.fixture
def prompt_pruning(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The pruning starts as soon as the server's pruning task next looks (at most a few
    seconds), instead of minutes after the delete."""
    monkeypatch.setattr(retired_labels, "settle", lambda: datetime.timedelta(0))
    yield


async def _delete(org: Org, owner: str, label: str) -> float:
    began = time.monotonic()
    await org.admin.datasets.DeleteLabelDef(
        datasets_pb2.DeleteLabelDefRequest(owner=owner, name="ds", label_name=label), timeout=5
    )
    return time.monotonic() - began


async def test_a_deleted_label_leaves_every_labelling_at_once_and_is_pruned_later(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, src = await _labelled(org)
    before = {i: await _labelling(org, owner, f"{src}.c{i:05d}") for i in range(4)}

    assert await _delete(org, owner, "A") < 2
    # The taxonomy lost A and its descendant at once...
    defs = await org.admin.datasets.ListLabelDefs(
        datasets_pb2.ListLabelDefsRequest(owner=owner, name="ds")
    )
    assert [d.name for d in defs.label_defs] == ["B"]
    # ... the stored labellings still name it (the pruning waits minutes to start) ...
    assert await _stored_with("ds", owner, "A") == 3 * COMMENTS // 4
    # ... but no reader sees it: GetLabelling, and the export.
    for i in range(4):
        assert _shown(await _labelling(org, owner, f"{src}.c{i:05d}")) == _WITHOUT_A[i]
    during = await _export(org, owner)
    assert len(during) == COMMENTS
    for i, (uid, annotated, labels) in enumerate(during):
        shown = _WITHOUT_A[i % 4]
        assert uid == f"{src}.c{i:05d}"
        assert (annotated, labels) == ((False, []) if shown is None else (True, shown[0]))

    # The name cannot come back while it is pruned, nor be written in a labelling.
    for name in ("A", "A > y"):
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, [name]))
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "LABEL_BEING_REMOVED",
        )
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.UpdateLabelling(
            datasets_pb2.UpdateLabellingRequest(
                owner=owner,
                name="ds",
                comment_uid=f"{src}.c00000",
                assigned=[Label(name="A", sentiment="positive")],
            )
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT

    retired = await _retired(owner)
    monkeypatch.setattr(retired_labels, "settle", lambda: datetime.timedelta(0))
    await _pruned(retired)
    assert await _stored_with("ds", owner, "A") == 0
    # Readers see exactly what they saw before the pruning; labellings keep their time.
    assert await _export(org, owner) == during
    for i in range(4):
        after = await _labelling(org, owner, f"{src}.c{i:05d}")
        assert _shown(after) == _WITHOUT_A[i]
        if _WITHOUT_A[i] is not None:
            assert after.updated_at == before[i].updated_at
    # The name is free again.
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["A"]))
    defs = await org.admin.datasets.ListLabelDefs(
        datasets_pb2.ListLabelDefsRequest(owner=owner, name="ds")
    )
    assert [d.name for d in defs.label_defs] == ["A", "B"]


async def test_writes_during_the_pruning_are_never_overwritten(
    org: Org, prompt_pruning: None
) -> None:
    owner, src = await _labelled(org)
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["C"]))
    assert await _delete(org, owner, "A") < 2
    retired = await _retired(owner)
    # Relabel every comment while the pruning runs, in chunks, in turns with it.
    written: dict[str, tuple[str, ...]] = {}
    for start in range(0, COMMENTS, 250):
        chunk = [
            _item(f"{src}.c{i:05d}", ("C",) if i % 2 else ("B", "C"))
            for i in range(start, start + 250)
        ]
        await org.admin.datasets.BatchUpdateLabellings(
            datasets_pb2.BatchUpdateLabellingsRequest(owner=owner, name="ds", labellings=chunk)
        )
        written.update({item.comment_uid: tuple(x.name for x in item.assigned) for item in chunk})
        await asyncio.sleep(0.05)
    await _pruned(retired)
    exported = await _export(org, owner)
    assert [(uid, True, list(written[uid])) for uid, _, _ in exported] == exported
    assert await _stored_with("ds", owner, "A") == 0


async def test_a_label_of_a_deleted_dataset_stops_its_pruning(
    org: Org, prompt_pruning: None
) -> None:
    owner, _ = await _labelled(org)
    await _delete(org, owner, "A")
    retired = await _retired(owner)
    await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=owner, name="ds")
    )
    await _pruned(retired)


async def test_deleting_a_label_not_in_the_taxonomy_answers_not_found(org: Org) -> None:
    owner, _ = await _labelled(org)
    with pytest.raises(CorrigoError) as err:
        await _delete(org, owner, "Z")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert await _retired(owner) == []


async def test_a_correction_sessions_documents_leave_a_deleted_label_out(org: Org) -> None:
    corpus = await c.corpus(org, 4, classes=("Comfort", "Price"))
    session = await c.prepared(corpus, await corpus.create(sample_size=2, name="s"))
    first, second = await c.documents(corpus, session.id)
    await c.correct(corpus, session.id, first.uid, "Price", "POS")
    await c.correct(corpus, session.id, second.uid, "Comfort")
    await org.admin.datasets.DeleteLabelDef(
        datasets_pb2.DeleteLabelDefRequest(owner=corpus.owner, name="ds", label_name="Price")
    )
    shown = {
        d.uid: ([x.name for x in d.assigned], d.corrected)
        for d in await c.documents(corpus, session.id)
    }
    assert shown == {first.uid: (["POS"], True), second.uid: (["Comfort"], True)}
