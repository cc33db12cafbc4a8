"""Bulk labelling through the gateway: BatchUpdateLabellings' route, and
StreamUpdateLabellings as an NDJSON request body answered by NDJSON acknowledgements,
with their errors and their permission."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.rest import world
from tests.rest.gateway import Rest

# One label of the dataset's taxonomy, and another for a second labelling.
PARENT = {"name": world.ASSIGNED[0]["name"], "sentiment": "positive"}
CHILD = {"name": world.ASSIGNED[1]["name"], "sentiment": "negative"}


@pytest.fixture(scope="module")
def filled(admin: Rest) -> world.Filled:
    return world.filled_dataset(admin, more=4)


def _uid(filled: world.Filled, comment_id: str) -> str:
    return f"{filled.source_id}.{comment_id}"


def _assigned(caller: Rest, filled: world.Filled, comment_id: str) -> list[Any]:
    answer = caller.ok("GET", f"{filled.path}/labellings/{_uid(filled, comment_id)}")
    labels: list[Any] = answer.get("assigned", [])
    return labels


def _ndjson(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(chunk).encode() + b"\n" for chunk in chunks)


def test_batch_sets_every_labelling_of_the_request(admin: Rest, filled: world.Filled) -> None:
    body = {
        "labellings": [
            {"comment_uid": _uid(filled, "c0"), "assigned": [PARENT]},
            {"comment_uid": _uid(filled, "c1"), "assigned": [PARENT, CHILD]},
        ]
    }
    assert admin.ok("POST", f"{filled.path}/labellings", body) == {"updated": 2, "status": "ok"}
    assert _assigned(admin, filled, "c0") == [PARENT]
    assert _assigned(admin, filled, "c1") == [PARENT, CHILD]


def test_batch_is_all_or_nothing_and_names_each_bad_item(admin: Rest, filled: world.Filled) -> None:
    before = _assigned(admin, filled, "c2")
    body = {
        "labellings": [
            {"comment_uid": _uid(filled, "c2"), "assigned": [CHILD]},
            {"comment_uid": _uid(filled, "missing"), "assigned": [PARENT]},
            {
                "comment_uid": _uid(filled, "c3"),
                "assigned": [{"name": "Not A Label", "sentiment": "positive"}],
            },
        ]
    }
    answer = admin.call("POST", f"{filled.path}/labellings", body)
    assert answer.status == 400, answer.text
    assert answer.violations() == [
        "labellings[2].assigned[0].name",
        "labellings[1].comment_uid",
    ]
    assert _assigned(admin, filled, "c2") == before
    empty = admin.call("POST", f"{filled.path}/labellings", {"labellings": []})
    assert empty.status == 400 and empty.violations() == ["labellings"]


def test_batch_needs_the_annotate_permission(admin: Rest, filled: world.Filled) -> None:
    body = {"labellings": [{"comment_uid": _uid(filled, "c3"), "assigned": [CHILD]}]}
    viewer = world.member(admin, filled.project_id, "VIEWER")
    denied = viewer.call("POST", f"{filled.path}/labellings", body)
    assert denied.status == 403 and denied.reason() == "PERMISSION_MISSING"
    annotator = world.member(admin, filled.project_id, "ANNOTATOR")
    assert annotator.ok("POST", f"{filled.path}/labellings", body)["updated"] == 1
    assert _assigned(viewer, filled, "c3") == [CHILD]


def test_a_stream_of_chunks_is_acknowledged_chunk_by_chunk(
    admin: Rest, filled: world.Filled
) -> None:
    chunks = [
        {
            "owner": filled.owner,
            "name": "example",
            "chunk": 0,
            "labellings": [{"comment_uid": _uid(filled, "c0"), "assigned": [CHILD]}],
        },
        {
            "chunk": 1,
            "labellings": [
                {"comment_uid": _uid(filled, "c1"), "assigned": []},
                {"comment_uid": _uid(filled, "c2"), "assigned": [PARENT]},
            ],
        },
    ]
    answer = admin.call("POST", "/api/v1/stream-labellings", data=_ndjson(chunks))
    assert answer.status == 200, answer.text
    assert answer.headers.get_content_type() == "application/x-ndjson"
    assert [line["result"] for line in answer.lines] == [
        {"chunk": "0", "updated": 1},
        {"chunk": "1", "updated": 2},
    ]
    assert _assigned(admin, filled, "c0") == [CHILD]
    assert _assigned(admin, filled, "c1") == []
    assert _assigned(admin, filled, "c2") == [PARENT]


def test_a_stream_stops_at_its_bad_chunk_naming_the_item(admin: Rest, filled: world.Filled) -> None:
    chunks = [
        {
            "owner": filled.owner,
            "name": "example",
            "chunk": 7,
            "labellings": [{"comment_uid": _uid(filled, "c3"), "assigned": [PARENT]}],
        },
        {"chunk": 8, "labellings": [{"comment_uid": "no-dot", "assigned": [PARENT]}]},
    ]
    answer = admin.call("POST", "/api/v1/stream-labellings", data=_ndjson(chunks))
    lines = answer.lines
    assert lines[0] == {"result": {"chunk": "7", "updated": 1}}
    error = lines[-1]["error"]
    assert error["grpc_code"] == 3 and "labellings[0].comment_uid" in error["message"]
    assert _assigned(admin, filled, "c3") == [PARENT]
    viewer = world.member(admin, filled.project_id, "VIEWER")
    denied = viewer.call("POST", "/api/v1/stream-labellings", data=_ndjson(chunks[:1]))
    assert denied.lines[-1]["error"]["grpc_code"] == 7
