"""Bulk labelling: BatchUpdateLabellings (one transaction, all or nothing) and
StreamUpdateLabellings (a transaction per acknowledged chunk), and `corrigo labels
import`, on both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from corrigo.client import CorrigoError
from corrigo.v1 import admin_pb2, datasets_pb2
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.comments_pb2 import Label
from corrigo.v1.datasets_pb2 import LabellingUpdate
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

POSITIVE = "positive"


async def _labelled(org: Org, count: int) -> tuple[str, str]:
    """A project (its name) with dataset `ds` over source `mailbox` (its id) of `count`
    comments, and the taxonomy Billing, Billing > Refund, Access, Other."""
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    await h.sync(org.admin, project.name, "mailbox", [h.comment(f"c{i}", i) for i in range(count)])
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=project.name,
            name="ds",
            label_defs=[
                datasets_pb2.LabelDef(name=n) for n in ("Billing > Refund", "Access", "Other")
            ],
        )
    )
    return project.name, src.id


def _item(uid: str, *names: str, dismissed: tuple[str, ...] = ()) -> LabellingUpdate:
    return LabellingUpdate(
        comment_uid=uid,
        assigned=[Label(name=n, sentiment=POSITIVE) for n in names],
        dismissed=[Label(name=n, sentiment=POSITIVE) for n in dismissed],
    )


async def _labels_of(org: Org, owner: str, uid: str) -> tuple[list[str], list[str]]:
    answer = await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=uid)
    )
    return [a.name for a in answer.assigned], [d.name for d in answer.dismissed]


async def test_batch_sets_every_labelling_in_one_call(org: Org) -> None:
    owner, src = await _labelled(org, 3000)
    items = [_item(f"{src}.c{i}", "Billing", "Access") for i in range(3000)]
    items[7] = _item(f"{src}.c7", "Other", dismissed=("Access",))
    answer = await org.admin.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(owner=owner, name="ds", labellings=items)
    )
    assert (answer.updated, answer.status) == (3000, "ok")
    assert await _labels_of(org, owner, f"{src}.c0") == (["Billing", "Access"], [])
    assert await _labels_of(org, owner, f"{src}.c7") == (["Other"], ["Access"])
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    exported = [c for page in pages for c in page.comments]
    assert len(exported) == 3000 and all(c.comment.has_annotations for c in exported)

    # Setting them again changes nothing; empty lists remove a labelling.
    await org.admin.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(
            owner=owner, name="ds", labellings=[items[0], LabellingUpdate(comment_uid=f"{src}.c1")]
        )
    )
    assert await _labels_of(org, owner, f"{src}.c0") == (["Billing", "Access"], [])
    assert await _labels_of(org, owner, f"{src}.c1") == ([], [])


async def test_batch_is_all_or_nothing_and_names_every_bad_item(org: Org) -> None:
    owner, src = await _labelled(org, 10)
    bad = [
        _item(f"{src}.c0", "Billing"),
        _item("nodot", "Billing"),
        _item(f"{src}.c0", "Access"),
        _item("0123456789abcdef.c1", "Billing"),
        _item(f"{src}.absent", "Billing"),
        _item(f"{src}.c2", "Unknown"),
        _item(f"{src}.c3", "bad >> name"),
        LabellingUpdate(comment_uid=f"{src}.c4", assigned=[Label(name="Billing")]),
        _item(f"{src}.c1", "Billing", dismissed=("Billing",)),
        _item(f"{src}.c9", "Access", "Access"),
    ]
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.BatchUpdateLabellings(
            datasets_pb2.BatchUpdateLabellingsRequest(owner=owner, name="ds", labellings=bad)
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == [
        "labellings[1].comment_uid",
        "labellings[2].comment_uid",
        "labellings[3].comment_uid",
        "labellings[6].assigned[0].name",
        "labellings[7].assigned[0].sentiment",
        "labellings[8].dismissed[0].name",
        "labellings[9].assigned[1].name",
        "labellings[5].assigned[0].name",
        "labellings[4].comment_uid",
    ]
    # Nothing was written, not even the good first item.
    assert await _labels_of(org, owner, f"{src}.c0") == ([], [])

    for count in (0, 4097):
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.BatchUpdateLabellings(
                datasets_pb2.BatchUpdateLabellingsRequest(
                    owner=owner, name="ds", labellings=[_item(f"{src}.c0")] * count
                )
            )
        assert err.value.fields == ["labellings"]
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.BatchUpdateLabellings(
            datasets_pb2.BatchUpdateLabellingsRequest(
                owner=owner, name="nope", labellings=[_item(f"{src}.c0")]
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_bulk_labelling_needs_annotate(org: Org, other_org: Org) -> None:
    owner, src = await _labelled(org, 2)
    projects = await org.admin.admin.ListProjects(admin_pb2.ListProjectsRequest())
    pid = next(p.id for p in projects.projects if p.name == owner)
    _, viewer = await org.member(pid, Member.VIEWER)
    _, annotator = await org.member(pid, Member.ANNOTATOR)
    request = datasets_pb2.BatchUpdateLabellingsRequest(
        owner=owner, name="ds", labellings=[_item(f"{src}.c0", "Access")]
    )
    for client, code in ((viewer, grpc.StatusCode.PERMISSION_DENIED),
                         (other_org.admin, grpc.StatusCode.NOT_FOUND)):  # fmt: skip
        with pytest.raises(CorrigoError) as err:
            await client.datasets.BatchUpdateLabellings(request)
        assert err.value.code == code
        with pytest.raises(CorrigoError) as stream_err:
            async for _ in client.datasets.StreamUpdateLabellings(_chunks(owner, src, 1, 1)):
                pass
        assert stream_err.value.code == code
    assert (await annotator.datasets.BatchUpdateLabellings(request)).updated == 1
    acks = [a async for a in annotator.datasets.StreamUpdateLabellings(_chunks(owner, src, 1, 2))]
    assert [(a.chunk, a.updated) for a in acks] == [(0, 2)]


async def _chunks(
    owner: str, src: str, count: int, size: int, start: int = 0
) -> AsyncIterator[datasets_pb2.StreamUpdateLabellingsRequest]:
    for n in range(count):
        yield datasets_pb2.StreamUpdateLabellingsRequest(
            owner=owner if n == 0 else "",
            name="ds" if n == 0 else "",
            chunk=n,
            labellings=[_item(f"{src}.c{start + n * size + i}", "Access") for i in range(size)],
        )


async def test_stream_acknowledges_chunks_and_stops_at_a_bad_one(org: Org) -> None:
    owner, src = await _labelled(org, 50)
    acks = [a async for a in org.admin.datasets.StreamUpdateLabellings(_chunks(owner, src, 5, 10))]
    assert [(a.chunk, a.updated) for a in acks] == [(n, 10) for n in range(5)]
    assert await _labels_of(org, owner, f"{src}.c49") == (["Access"], [])

    async def bad_second() -> AsyncIterator[datasets_pb2.StreamUpdateLabellingsRequest]:
        yield datasets_pb2.StreamUpdateLabellingsRequest(
            owner=owner, name="ds", chunk=0, labellings=[_item(f"{src}.c0", "Other")]
        )
        yield datasets_pb2.StreamUpdateLabellingsRequest(
            chunk=1, labellings=[_item(f"{src}.c1", "Other"), _item(f"{src}.c2", "Nope")]
        )

    got = []
    with pytest.raises(CorrigoError) as err:
        async for ack in org.admin.datasets.StreamUpdateLabellings(bad_second()):
            got.append(ack.chunk)
    assert got == [0]
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["labellings[1].assigned[0].name"]
    assert await _labels_of(org, owner, f"{src}.c0") == (["Other"], [])
    assert await _labels_of(org, owner, f"{src}.c1") == (["Access"], [])

    async def other_dataset() -> AsyncIterator[datasets_pb2.StreamUpdateLabellingsRequest]:
        yield datasets_pb2.StreamUpdateLabellingsRequest(
            owner=owner, name="ds", chunk=0, labellings=[_item(f"{src}.c0", "Other")]
        )
        yield datasets_pb2.StreamUpdateLabellingsRequest(
            owner=owner, name="other", chunk=1, labellings=[_item(f"{src}.c0", "Other")]
        )

    with pytest.raises(grpc.RpcError) as err:
        async for _ in org.admin.datasets.StreamUpdateLabellings(other_dataset()):
            pass
    assert CorrigoError.from_rpc_error(err.value).fields == ["owner"]


async def test_single_update_answers_what_get_reads(org: Org) -> None:
    owner, src = await _labelled(org, 1)
    answer = await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="ds",
            comment_uid=f"{src}.c0",
            assigned=[Label(name="Access", sentiment=POSITIVE)],
            dismissed=[Label(name="Other", sentiment="negative")],
        )
    )
    read = await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=f"{src}.c0")
    )
    assert answer == read
    cleared = await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(owner=owner, name="ds", comment_uid=f"{src}.c0")
    )
    assert cleared == await org.admin.datasets.GetLabelling(
        datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=f"{src}.c0")
    )
    assert not cleared.HasField("updated_at")


async def test_cli_labels_import(org: Org, tmp_path: Path) -> None:
    owner, src = await _labelled(org, 300)
    lines = [
        {"comment_uid": f"{src}.c{i}", "assigned": [{"name": "Access", "sentiment": POSITIVE}]}
        for i in range(300)
    ]
    # An export's lines are labellings too: the comment's uid and its assigned labels.
    lines[5] = {
        "comment": {"uid": f"{src}.c5", "id": "c5"},
        "annotations": {"labels": {"assigned": [{"name": "Other", "sentiment": "negative"}]}},
    }
    data = tmp_path / "labels.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code, _, err = await org.cli(
        "labels", "import", f"{owner}/ds", str(data), "--chunk-size", "128"
    )
    assert code == 0, err
    assert "300 labellings set in 3 chunks" in err
    assert await _labels_of(org, owner, f"{src}.c299") == (["Access"], [])
    assert await _labels_of(org, owner, f"{src}.c5") == (["Other"], [])

    data.write_text(json.dumps(lines[0]) + "\n" + '{"comment_uid": 3}\n')
    code, _, err = await org.cli("labels", "import", f"{owner}/ds", str(data), "-q")
    assert code == 1 and f"{data}:2:" in err, err
    # A blank line counts; a line that is not UTF-8, or not JSON, is named, never a traceback.
    for bad, problem in ((b"\xff\xfe{}", "not UTF-8 text"), (b"{", "not JSON")):
        data.write_bytes(json.dumps(lines[0]).encode() + b"\n\n" + bad + b"\n")
        code, _, err = await org.cli("labels", "import", f"{owner}/ds", str(data), "-q")
        assert code == 1 and f"{data}:3: {problem}" in err and "Traceback" not in err, err
