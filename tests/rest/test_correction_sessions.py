"""000, Create a new correction session: the document's request through the gateway,
its 201 answer's shape, and the error codes it lists (400, 401, 403, 404, 409)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.rest import documents, world
from tests.rest.gateway import Rest, assert_shape

# The document's example model: ABSA, classes and labels shown in its answer.
MODEL = {
    "display_name": "This is my model",
    "type": "ABSA",
    "classes": ["Comfort"],
    "labels": ["POS"],
}


@pytest.fixture(scope="module")
def filled(admin: Rest) -> world.Filled:
    return world.filled_dataset(admin, more=3, model=MODEL)


def route(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/correction-sessions"


def body(model_id: int, **extra: Any) -> dict[str, Any]:
    """The document's request body: model_id, sample_size, name."""
    return {
        "model_id": model_id,
        "sample_size": 100,
        "name": "This is my first correction session",
        **extra,
    }


OPENAPI = Path(__file__).parents[2] / "gen" / "openapi" / "corrigo.swagger.json"


def test_the_openapi_document_says_201_for_the_create() -> None:
    """`make gen` renames the create's success 201 (server/gateway/openapi_status.py)."""
    paths = json.loads(OPENAPI.read_text())["paths"]
    create = paths["/api/v1/projects/{project_id}/correction-sessions"]["post"]
    assert list(create["responses"]) == ["201"]
    others = [op for ops in paths.values() for op in ops.values() if op is not create]
    assert all("200" in op["responses"] for op in others)


def test_create_answers_201_and_the_session(admin: Rest, filled: world.Filled) -> None:
    answer = admin.call("POST", route(filled.project_id), body(filled.model_id))
    assert answer.status == 201, answer.text
    assert answer.headers.get_content_type() == "application/json"
    assert "x-http-code" not in {h.lower() for h in answer.headers}
    session = answer.json
    # `finished` is null until the session is finished.
    assert_shape(session, documents.CORRECTION_SESSION, nullable=["finished"])
    assert session["finished"] is None
    assert session["status"] == "CREATED" and session["status"] in documents.CORRECTION_STATUSES
    assert session["type"] in documents.CORRECTION_TYPES and session["type"] == "ABSA"
    assert session["mode"] == "CORRECTION"
    assert session["model"] == {"id": filled.model_id, "display_name": "This is my model"}
    assert (session["classes"], session["labels"]) == (["Comfort"], ["POS"])
    assert session["project_id"] == filled.project_id
    assert session["name"] == "This is my first correction session"
    assert session["document_count"] == 3  # the unannotated comments, fewer than sample_size

    # The route answers the same session; only the create is 201.
    got = admin.ok("GET", f"{route(filled.project_id)}/{session['id']}")
    assert got["uuid"] == session["uuid"]


def test_an_annotator_creates_with_only_the_required_model_id(admin: Rest) -> None:
    fresh = world.filled_dataset(admin, more=2, model=MODEL)
    annotator = world.member(admin, fresh.project_id, "ANNOTATOR")
    answer = annotator.call("POST", route(fresh.project_id), {"model_id": fresh.model_id})
    assert answer.status == 201, answer.text
    assert (answer.json["name"], answer.json["document_count"]) == ("", 2)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"sample_size": 0}, "sample_size"),
        ({"sample_size": 1001}, "sample_size"),
        ({"name": "n" * 257}, "name"),
    ],
)
def test_invalid_body_400(
    admin: Rest, filled: world.Filled, extra: dict[str, Any], field: str
) -> None:
    answer = admin.call("POST", route(filled.project_id), body(filled.model_id, **extra))
    assert answer.status == 400, answer.text
    assert field in answer.violations()


def test_not_a_json_body_400(admin: Rest, filled: world.Filled) -> None:
    answer = admin.call("POST", route(filled.project_id), data=b'{"model_id": "one"}')
    assert answer.status == 400, answer.text


def test_not_authenticated_401(admin: Rest, filled: world.Filled) -> None:
    for token in (None, "crg_1_wrong"):
        answer = admin.as_user(token).call("POST", route(filled.project_id), body(filled.model_id))
        assert answer.status == 401, answer.text


def test_below_annotator_403(admin: Rest, filled: world.Filled) -> None:
    for role in (None, "VIEWER"):
        caller = world.member(admin, filled.project_id, role)
        answer = caller.call("POST", route(filled.project_id), body(filled.model_id))
        assert answer.status == 403, answer.text
        assert answer.reason() == "PERMISSION_MISSING"


def test_project_or_model_not_found_404(admin: Rest, filled: world.Filled) -> None:
    assert admin.call("POST", route(999999), body(filled.model_id)).status == 404
    answer = admin.call("POST", route(filled.project_id), body(999999))
    assert answer.status == 404 and answer.reason() == "RESOURCE_NOT_FOUND", answer.text


def test_all_documents_annotated_409(admin: Rest) -> None:
    annotated = world.filled_dataset(admin, more=1, model=MODEL, label_all=True)
    answer = admin.call("POST", route(annotated.project_id), body(annotated.model_id))
    assert answer.status == 409, answer.text
    assert answer.reason() == "ALL_DOCUMENTS_ANNOTATED"
    assert answer.json["message"] == "all documents are annotated"
