"""The dataset export, unary and streamed, through the real server."""

from __future__ import annotations

import asyncio
import datetime
import json
import re

import grpc
import pytest
from corrigo.client import CorrigoError
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Comment, Label, PredictedLabel
from google.protobuf import json_format

from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The document's example: PUT body, the exported comment, and the export's answer.
DOCUMENT_PUT = {
    "dataset": {
        "description": "An optional long form description.",
        "model_family": "english",
        "source_ids": ["18ba5ce699f8da1f"],
        "title": "An Example Dataset",
    }
}
DOCUMENT_EXPORT = json.loads(r"""
{ "comments": [ { "annotations": { "labels": { "assigned": [ { "name": "Parent Label", "sentiment": "positive" }, { "name": "Parent Label > Child Label", "sentiment": "positive" } ] } }, "comment": { "context": "1596721237668", "created_at": "2020-08-06T13:20:28.531000Z", "has_annotations": true, "id": "0123456789abcdef", "last_modified": "2020-08-06T13:40:37.668000Z", "messages": [ { "body": { "text": "Alice,\n\nHere are the figures for today.\n\nRegards,\nBob" }, "from": "bob@organisation.org", "sent_at": "2011-12-11T11:05:10Z", "subject": { "text": "Today's figures" }, "to": ["alice@company.com"] } ], "source_id": "47194279497e141e", "text_format": "plain", "thread_id": "123456", "timestamp": "2011-12-11T11:05:10Z", "uid": "47194279497e141e.0123456789abcdef", "user_properties": { "string:Recipient Domain": "company.com", "string:Sender Domain": "organisation.org" } }, "predictions": { "labels": [ { "name": "Another Parent Label", "probability": 0.954979807138443, "sentiment": -0.4281917143125379 }, { "name": "Another Parent Label > Another Child Label", "probability": 0.7726812064647675, "sentiment": -0.6603664430231163 } ] } } ], "continuation": "2021-02-16T10:55:05Z.c060a787c0b2bbf95526ad5cf28bf582", "status": "ok" }
""")  # noqa: E501


def _document_comment() -> Comment:
    synced = dict(DOCUMENT_EXPORT["comments"][0]["comment"])
    for server_field in ("context", "created_at", "has_annotations", "last_modified"):
        synced.pop(server_field)
    for output_only in ("source_id", "uid"):
        synced.pop(output_only)
    return json_format.ParseDict(synced, Comment())


def _instant(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


async def test_document_example_end_to_end(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner, "emails")
    body = json.loads(json.dumps(DOCUMENT_PUT))
    body["dataset"]["source_ids"] = [src.id]
    request = json_format.ParseDict(
        {"owner": owner, "name": "example", **body}, datasets_pb2.CreateDatasetRequest()
    )
    created = await org.admin.datasets.CreateDataset(request)
    made = h.as_json(created)
    assert made["status"] == "ok"
    assert made["dataset"]["has_sentiment"] is True
    assert {k: made["dataset"][k] for k in ("description", "model_family", "title", "name")} == {
        "description": "An optional long form description.",
        "model_family": "english",
        "title": "An Example Dataset",
        "name": "example",
    }
    assert made["dataset"]["source_ids"] == [src.id] and made["dataset"]["owner"] == owner
    assert re.fullmatch(r"[0-9a-f]{16}", made["dataset"]["id"])

    document = _document_comment()
    later = h.comment("later", 0)
    later.timestamp.FromJsonString("2012-01-01T00:00:00Z")
    synced = await h.sync(org.admin, owner, "emails", [document, later])
    assert (synced.new, synced.updated, synced.unchanged) == (2, 0, 0)
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner,
            name="example",
            label_defs=[datasets_pb2.LabelDef(name="Parent Label > Child Label")],
        )
    )
    uid = f"{src.id}.0123456789abcdef"
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="example",
            comment_uid=uid,
            assigned=[
                Label(name="Parent Label", sentiment="positive"),
                Label(name="Parent Label > Child Label", sentiment="positive"),
            ],
        )
    )
    version = await h.model_version(org.admin, owner, "example")
    predicted = DOCUMENT_EXPORT["comments"][0]["predictions"]["labels"]
    await org.admin.models.UploadPredictions(
        models_pb2.UploadPredictionsRequest(
            owner=owner,
            dataset="example",
            version=version.version,
            predictions=[
                models_pb2.CommentPredictions(
                    uid=uid, labels=[json_format.ParseDict(p, PredictedLabel()) for p in predicted]
                )
            ],
        )
    )

    answer = await org.admin.datasets.ExportDataset(
        json_format.ParseDict(
            {"owner": owner, "name": "example", "limit": 1}, datasets_pb2.ExportDatasetRequest()
        )
    )
    got = json.loads(json_format.MessageToJson(answer, preserving_proto_field_name=True))
    expected = json.loads(json.dumps(DOCUMENT_EXPORT))
    # Not ours to choose: the source's id (and so the uid), when the comment was synced
    # (created_at, last_modified, and context, last_modified in milliseconds), and the
    # continuation's opaque text. Everything else must match exactly.
    comment, want = got["comments"][0]["comment"], expected["comments"][0]["comment"]
    assert comment.pop("source_id") == src.id and want.pop("source_id")
    assert comment.pop("uid") == uid and want.pop("uid")
    created_at, modified = _instant(comment.pop("created_at")), _instant(comment.pop("last_modified"))
    want.pop("created_at"), want.pop("last_modified")
    assert created_at == modified
    assert comment.pop("context") == str(int(modified.timestamp() * 1000)) and want.pop("context")
    assert got.pop("continuation") and expected.pop("continuation")
    assert got == expected

    rest = await org.admin.datasets.ExportDataset(
        datasets_pb2.ExportDatasetRequest(
            owner=owner, name="example", limit=1, continuation=answer.continuation
        )
    )
    assert [c.comment.id for c in rest.comments] == ["later"]
    assert rest.continuation == ""
    assert "continuation" not in h.as_json(rest)
    assert not rest.comments[0].comment.has_annotations
    assert list(rest.comments[0].predictions.labels) == []
