"""Errors always arrive: each bulk RPC sent its maximum number of items, all bad, answers
INVALID_ARGUMENT naming the first ones, in order, and counting the rest, well inside
the 16 KiB a client accepts of an error's headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.errors import MAX_VIOLATIONS
from corrigo.server.domain.labellings import MAX_LABELLINGS
from corrigo.server.domain.labels import MAX_LABELS
from corrigo.server.store.sources import MAX_SYNC
from corrigo.v1 import correction_pb2, datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Well under grpc's 16 KiB default, with room for the other headers.
_ROOM = 8 * 1024

Call = Callable[[AsyncClient], Awaitable[Any]]


async def _first(stream: Any) -> Any:
    return [answer async for answer in stream]


async def _one(request: Any) -> AsyncIterator[Any]:
    yield request


def _bulk_calls(owner: str, project_id: int, uids: list[str]) -> dict[str, tuple[Call, str]]:
    """Each bulk RPC with its maximum of items, every item bad: the call and the field
    path of its first item's violation (a regular expression)."""
    bad_comments = [h.comment(f"bad id {i}!", i) for i in range(MAX_SYNC)]
    sync = sources_pb2.SyncCommentsRequest(owner=owner, name="mailbox", comments=bad_comments)
    stream_sync = sources_pb2.StreamSyncCommentsRequest(
        owner=owner, name="mailbox", comments=bad_comments
    )
    unknown_label = [
        datasets_pb2.LabellingUpdate(
            comment_uid=uid, assigned=[Label(name="No Such Label", sentiment="positive")]
        )
        for uid in uids[:MAX_LABELLINGS]
    ]
    labellings = datasets_pb2.BatchUpdateLabellingsRequest(
        owner=owner, name="ds", labellings=unknown_label
    )
    stream_labellings = datasets_pb2.StreamUpdateLabellingsRequest(
        owner=owner, name="ds", labellings=unknown_label
    )
    label_defs = h.label_defs(owner, [f"bad//name {i} >" for i in range(MAX_LABELS)])
    predictions = models_pb2.UploadPredictionsRequest(
        owner=owner,
        dataset="ds",
        version=1,
        predictions=[
            models_pb2.CommentPredictions(
                uid=f"not a uid {i}", labels=[PredictedLabel(name="x", probability=2.0)]
            )
            for i in range(MAX_SYNC)
        ],
    )
    deletes = sources_pb2.DeleteCommentsRequest(
        owner=owner, name="mailbox", ids=[f"bad id {i}!" for i in range(MAX_SYNC)]
    )
    group = correction_pb2.CreateDocumentGroupRequest(
        project_id=project_id, name="g", document_uids=[f"nope {i}" for i in range(4096)]
    )
    return {
        "SyncComments": (lambda c: c.sources.SyncComments(sync), r"comments\[0\]\."),
        "StreamSyncComments": (
            lambda c: _first(c.sources.StreamSyncComments(_one(stream_sync))),
            r"comments\[0\]\.",
        ),
        "BatchUpdateLabellings": (
            lambda c: c.datasets.BatchUpdateLabellings(labellings),
            r"labellings\[0\]\.",
        ),
        "StreamUpdateLabellings": (
            lambda c: _first(c.datasets.StreamUpdateLabellings(_one(stream_labellings))),
            r"labellings\[0\]\.",
        ),
        "CreateLabelDefs": (
            lambda c: c.datasets.CreateLabelDefs(label_defs),
            r"label_defs\[0\]",
        ),
        "UploadPredictions": (
            lambda c: c.models.UploadPredictions(predictions),
            r"predictions\[0\]",
        ),
        "DeleteComments": (lambda c: c.sources.DeleteComments(deletes), r"ids\[0\]"),
        "CreateDocumentGroup": (
            lambda c: c.document_groups.CreateDocumentGroup(group),
            r"document_uids\[0\]",
        ),
    }


async def test_every_bulk_rpc_full_of_bad_items_names_the_first_ones(org: Org) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    await h.model_version(org.admin, project.name, "ds")
    await h.sync(
        org.admin, project.name, "mailbox", [h.comment(f"c{i}", i) for i in range(MAX_LABELLINGS)]
    )
    uids = [f"{src.id}.c{i}" for i in range(MAX_LABELLINGS)]
    for name, (call, first) in _bulk_calls(project.name, project.id, uids).items():
        with pytest.raises(CorrigoError) as err:
            await call(org.admin)
        error = err.value
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (name, error)
        assert len(error.field_violations) == MAX_VIOLATIONS, (name, error.field_violations)
        assert re.match(first, error.fields[0]), (name, error.fields)
        assert error.omitted_violations > 0, name
        assert error.message.startswith(f"{error.fields[0]}: "), (name, error.message)
        assert re.search(r"; and \d+ more like these$", error.message), (name, error.message)
        assert error.status is not None
        size = len(error.message.encode()) + len(error.status.SerializeToString()) * 4 // 3
        assert size < _ROOM, (name, size)
