"""001, session improvement: use_session_for_improvement, get_batch_sessions and
release_batch on their routes through the gateway, with the document's parameters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rest import world
from tests.rest.gateway import Rest, assert_shape, unique

# What the document says get_batch_sessions returns: the batch id, the last session
# number processed, and the sessions' data.
BATCH_PAGE: dict[str, Any] = {
    "batch_id": "abc123",
    "last_number": 1,
    "sessions": [
        {
            "number": 1,
            "scheduled_at": "2023-11-07T05:31:56Z",
            "session": {"session_id": 1, "user_id": 1, "title": "<string>"},
            "events": [{"type": "PROMPT", "text": "Hi", "created_at": "2023-11-07T05:31:56Z"}],
            "event_count": 2,
        }
    ],
}


@pytest.fixture(scope="module")
def catalog(admin: Rest) -> world.Catalog:
    return world.catalog(admin)


def chat(caller: Rest, catalog: world.Catalog, kind: str = "CHAT") -> int:
    """A practice session of the caller whose log holds a prompt and a response."""
    session = caller.ok("POST", "/user/practice/sessions", {**catalog.session_body(), "kind": kind})
    world.record_response(caller, session["session_id"])
    return int(session["session_id"])


def service_user(admin: Rest) -> Rest:
    user = admin.ok(
        "POST", "/api/v1/users", {"email": f"{unique('svc')}@example.test", "role": "SERVICE"}
    )
    token = admin.ok("POST", "/api/v1/tokens", {"user_id": user["id"], "description": "pipeline"})
    return admin.as_user(token["token"])


def test_schedule_page_and_release_as_the_document_describes(
    admin: Rest, catalog: world.Catalog
) -> None:
    pipeline = service_user(admin)
    # release_batch: 404 when no batch is active.
    idle = pipeline.call("POST", "/batch/release", {"release_id": unique("r")})
    assert idle.status == 404 and idle.reason() == "NO_ACTIVE_BATCH", idle.text

    first, second = chat(admin, catalog), chat(admin, catalog)
    # The document's body: `{"session_id": "your_session_id_here"}`, the id as a string.
    used = admin.ok("POST", "/session/use-for-improvement", {"session_id": str(first)})
    assert (used["session_id"], used["skipped"], used["number"]) == (first, False, 1)
    batch = used["batch_id"]
    assert isinstance(batch, str) and batch
    again = admin.ok("POST", "/session/use-for-improvement", {"session_id": second})
    assert (again["batch_id"], again["number"]) == (batch, 2)

    query = f"/batch/sessions?batch_id={batch}&after_number=0&limit=10&events_limit=100"
    page = pipeline.ok("GET", query)
    assert_shape(page, BATCH_PAGE)
    assert (page["batch_id"], page["last_number"]) == (batch, 2)
    assert [s["session"]["session_id"] for s in page["sessions"]] == [first, second]
    assert [e["type"] for e in page["sessions"][0]["events"]] == ["PROMPT", "RESPONSE"]
    # The document's defaults: after_number 0, limit 10, events_limit 100.
    assert pipeline.ok("GET", f"/batch/sessions?batch_id={batch}") == page
    cut = pipeline.ok(
        "GET", f"/batch/sessions?batch_id={batch}&after_number=1&limit=1&events_limit=1"
    )
    assert [s["number"] for s in cut["sessions"]] == [2] and cut["last_number"] == 2
    assert len(cut["sessions"][0]["events"]) == 1 and cut["sessions"][0]["event_count"] == 2

    release_id = unique("release")
    released = pipeline.ok("POST", "/batch/release", {"release_id": release_id})
    assert (released["batch_id"], released["status"], released["session_count"]) == (
        batch,
        "RELEASED",
        2,
    )
    assert pipeline.ok("POST", "/batch/release", {"release_id": release_id}) == released
    gone = pipeline.call("POST", "/batch/release", {"release_id": unique("r")})
    assert gone.status == 404 and gone.reason() == "NO_ACTIVE_BATCH"


def test_payload_search_sessions_are_skipped(admin: Rest, catalog: world.Catalog) -> None:
    session_id = chat(admin, catalog, kind="PAYLOAD_SEARCH")
    used = admin.ok("POST", "/session/use-for-improvement", {"session_id": session_id})
    assert used["skipped"] is True and used["skip_reason"] and used["batch_id"] == ""


def test_errors(admin: Rest, catalog: world.Catalog) -> None:
    session_id = chat(admin, catalog)
    for token in (None, "crg_1_wrong"):
        caller = admin.as_user(token)
        assert (
            caller.call("POST", "/session/use-for-improvement", {"session_id": session_id}).status
            == 401
        )
        assert caller.call("GET", "/batch/sessions?limit=10").status == 401
        assert caller.call("POST", "/batch/release", {"release_id": "r"}).status == 401
    member = world.member(admin, catalog.project_id, "ANNOTATOR")
    assert member.call("GET", "/batch/sessions?limit=10").status == 403
    assert member.call("POST", "/batch/release", {"release_id": "r"}).status == 403
    # Someone else's session, or none: not found.
    assert (
        member.call("POST", "/session/use-for-improvement", {"session_id": session_id}).status
        == 404
    )
    assert admin.call("POST", "/session/use-for-improvement", {"session_id": 999999}).status == 404
    for bad in ("your_session_id_here", 0):
        answer = admin.call("POST", "/session/use-for-improvement", {"session_id": bad})
        assert answer.status == 400, answer.text
    assert admin.call("GET", "/batch/sessions?limit=1000").status == 400
