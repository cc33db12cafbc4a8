"""003 and 004, practice sessions: POST /user/practice/sessions and PATCH
/user/practice/sessions/{session_id} with the documents' bodies through the gateway."""

from __future__ import annotations

import pytest

from tests.rest import documents, world
from tests.rest.gateway import Rest, assert_shape

SESSIONS = "/user/practice/sessions"


@pytest.fixture(scope="module")
def catalog(admin: Rest) -> world.Catalog:
    return world.catalog(admin)


def test_create_with_the_documents_body(admin: Rest, catalog: world.Catalog) -> None:
    session = admin.ok("POST", SESSIONS, catalog.session_body())
    # A new session has no responses yet, and the agent no few-shot examples.
    assert_shape(
        session,
        documents.PRACTICE_SESSION,
        may_be_empty=["responses", "settings.few_shot_links"],
    )
    for key, value in catalog.session_body().items():
        assert session[key] == value, key
    assert session["settings"]["session_id"] == session["session_id"]
    assert session["settings"]["style_preset"] == "accurate"
    assert session["responses"] == []


def test_create_with_nulls_as_the_document_allows(admin: Rest) -> None:
    nulls = dict.fromkeys(["class_id", "project_id", "knowledge_ids", "agent_id", "title", "notes"])
    session = admin.ok("POST", SESSIONS, nulls)
    for key in ("class_id", "project_id", "agent_id", "title", "notes"):
        assert session[key] is None, key
    assert session["knowledge_ids"] == []
    assert admin.ok("POST", SESSIONS, {})["session_id"] > session["session_id"]


def test_patch_with_the_documents_body(admin: Rest, catalog: world.Catalog) -> None:
    session_id = admin.ok("POST", SESSIONS, catalog.session_body())["session_id"]
    example = {"input_text": "Where is my order?", "output_text": "Let me check.", "title": "Order"}
    example_id = admin.ok("POST", "/user/practice/examples", example)["example_id"]
    settings = {"style_preset": "creative", "few_shot_example_ids": [example_id]}
    admin.ok("PATCH", f"{SESSIONS}/{session_id}/settings", settings)
    world.record_response(admin, session_id)

    patched = admin.ok("PATCH", f"{SESSIONS}/{session_id}", catalog.session_body("Renamed"))
    assert_shape(patched, documents.PRACTICE_SESSION)
    assert patched["title"] == "Renamed" and patched["notes"] == "trying"
    link = patched["settings"]["few_shot_links"][0]
    assert (link["example_id"], link["example"]["input_text"]) == (example_id, "Where is my order?")
    response = patched["responses"][0]
    assert (response["prompt_text"], response["response_text"]) == ("Hi", "Hello!")
    assert response["token_usage"] == {"prompt": 2, "completion": 3}

    # A partial body writes only what it holds.
    notes_only = admin.ok("PATCH", f"{SESSIONS}/{session_id}", {"notes": "more"})
    assert (notes_only["title"], notes_only["notes"]) == ("Renamed", "more")


def test_errors(admin: Rest, catalog: world.Catalog) -> None:
    session_id = admin.ok("POST", SESSIONS, catalog.session_body())["session_id"]
    body = catalog.session_body()
    for token in (None, "crg_1_wrong"):
        assert admin.as_user(token).call("POST", SESSIONS, body).status == 401
        assert admin.as_user(token).call("PATCH", f"{SESSIONS}/{session_id}", body).status == 401
    # 004: session_id x >= 1.
    zero = admin.call("PATCH", f"{SESSIONS}/0", body)
    assert zero.status == 400 and "session_id" in zero.violations(), zero.text
    assert admin.call("PATCH", f"{SESSIONS}/999999", body).status == 404
    # Another user's session is not theirs to see.
    other = world.member(admin, catalog.project_id, "ANNOTATOR")
    assert other.call("PATCH", f"{SESSIONS}/{session_id}", body).status == 404
    unknown_class = admin.call("POST", SESSIONS, {**body, "class_id": 999999})
    assert unknown_class.status == 404 and unknown_class.reason() == "RESOURCE_NOT_FOUND"
    bad = admin.call("POST", SESSIONS, {**body, "knowledge_ids": ["one"]})
    assert bad.status == 400 and "knowledge_ids" in bad.violations(), bad.text
