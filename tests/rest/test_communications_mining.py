"""002, Communications Mining datasets: every request of the document through the
gateway, its answers' shape, `"status": "ok"`, paging, permissions and error codes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rest import documents, world
from tests.rest.gateway import Rest, assert_shape


# The document's PUT body, with a source of the project for its example id.
def put_body(source_id: str) -> dict[str, Any]:
    return {
        "dataset": {
            "description": "An optional long form description.",
            "model_family": "english",
            "source_ids": [source_id],
            "title": "An Example Dataset",
        }
    }


@pytest.fixture(scope="module")
def filled(admin: Rest) -> world.Filled:
    return world.filled_dataset(admin)


def test_create_list_get_update_delete_as_the_document_shows(admin: Rest) -> None:
    owner = world.project(admin)["name"]
    source_id = world.source(admin, owner, [world.plain_comment("c1", 1)])
    path = f"/api/v1/datasets/{owner}/example"

    created = admin.ok("PUT", path, put_body(source_id))
    assert_shape(created, documents.DATASET_ANSWER)
    dataset = created["dataset"]
    assert created["status"] == "ok"
    assert (dataset["owner"], dataset["name"], dataset["title"]) == (
        owner,
        "example",
        "An Example Dataset",
    )
    assert dataset["source_ids"] == [source_id] and dataset["has_sentiment"] is True
    assert dataset["description"] == "An optional long form description."
    assert dataset["model_family"] == "english"

    listed = admin.ok("GET", "/api/v1/datasets")
    assert_shape(listed, documents.DATASETS_ANSWER)
    assert listed["status"] == "ok"
    assert dataset in listed["datasets"]

    got = admin.ok("GET", path)
    assert_shape(got, documents.DATASET_ANSWER)
    assert got == created

    updated = admin.ok("POST", path, {"dataset": {"title": "An Alternative Title"}})
    assert_shape(updated, documents.DATASET_ANSWER)
    assert updated["status"] == "ok"
    assert updated["dataset"]["title"] == "An Alternative Title"
    kept = {k: v for k, v in dataset.items() if k not in ("title", "last_modified")}
    assert {k: updated["dataset"][k] for k in kept} == kept
    assert updated["dataset"]["last_modified"] >= dataset["last_modified"]

    deleted = admin.ok("DELETE", path)
    assert deleted == documents.DELETE_ANSWER
    assert admin.call("GET", path).status == 404
    assert admin.call("DELETE", path).status == 404


def test_model_tags(admin: Rest, filled: world.Filled) -> None:
    # The document's heading has the dataset in the path (its curl line leaves it out).
    tags = admin.ok("GET", f"{filled.path}/model-tags")
    assert_shape(tags, documents.MODEL_TAGS_ANSWER)
    assert tags["status"] == "ok"
    assert [tag["name"] for tag in tags["model_tags"]] == ["prod", "staging"]


def test_export_pages_until_the_last_has_no_continuation(admin: Rest, filled: world.Filled) -> None:
    first = admin.ok("POST", f"{filled.path}/export", {"limit": 1})
    assert_shape(first, documents.EXPORT_ANSWER)
    assert first["status"] == "ok"
    exported = first["comments"][0]
    assert exported["comment"]["uid"] == f"{filled.source_id}.0123456789abcdef"
    assert exported["comment"]["has_annotations"] is True
    assert exported["annotations"]["labels"]["assigned"] == world.ASSIGNED
    assert exported["predictions"]["labels"] == world.PREDICTED
    expected = documents.EXPORT_ANSWER["comments"][0]["comment"]
    for key in ("id", "thread_id", "timestamp", "messages", "user_properties", "text_format"):
        message_keys = ("body", "from", "sent_at", "subject", "to")
        value = exported["comment"][key]
        if key == "messages":
            value = [{k: m[k] for k in message_keys} for m in value]
        assert value == expected[key], key

    uids = [exported["comment"]["uid"]]
    page = first
    while "continuation" in page:
        assert isinstance(page["continuation"], str) and page["continuation"]
        page = admin.ok(
            "POST", f"{filled.path}/export", {"limit": 1, "continuation": page["continuation"]}
        )
        assert page["status"] == "ok"
        uids += [c["comment"]["uid"] for c in page["comments"]]
    # The last page: no "continuation" field at all, as the document says.
    assert set(page) == {"comments", "status"}
    assert uids == [f"{filled.source_id}.{i}" for i in ("0123456789abcdef", "c0", "c1")]

    whole = admin.ok("POST", f"{filled.path}/export", {})
    assert "continuation" not in whole and len(whole["comments"]) == 3


def test_export_filters_of_the_document(admin: Rest, filled: world.Filled) -> None:
    uid = f"{filled.source_id}.c1"
    by_uid = admin.ok("POST", f"{filled.path}/export", {"comment_uids": [uid]})
    assert [c["comment"]["uid"] for c in by_uid["comments"]] == [uid]
    body = {
        "source_ids": [filled.source_id],
        "order_by": "timestamp",
        "from": "2011-12-12T00:00:00Z",
        "to": "2011-12-12T23:59:59Z",
        "limit": 256,
    }
    ranged = admin.ok("POST", f"{filled.path}/export", body)
    assert [c["comment"]["uid"] for c in ranged["comments"]] == [f"{filled.source_id}.c0"]
    created = admin.ok("POST", f"{filled.path}/export", {"order_by": "created_at"})
    assert len(created["comments"]) == 3


def test_permissions_of_the_document(admin: Rest, filled: world.Filled) -> None:
    """View labels (VIEWER) reads; Modify datasets (EDITOR) creates; Datasets admin (ADMIN)
    updates and deletes; Model admin (ADMIN) lists model tags; Export datasets (EDITOR)."""
    viewer = world.member(admin, filled.project_id, "VIEWER")
    editor = world.member(admin, filled.project_id, "EDITOR")
    project_admin = world.member(admin, filled.project_id, "ADMIN")
    path, update = filled.path, {"dataset": {"title": "An Alternative Title"}}

    assert viewer.ok("GET", path)["status"] == "ok"
    assert filled.owner in [d["owner"] for d in viewer.ok("GET", "/api/v1/datasets")["datasets"]]
    assert viewer.call("PUT", f"{path}-2", put_body(filled.source_id)).status == 403
    assert viewer.call("POST", f"{path}/export", {"limit": 1}).status == 403
    assert editor.ok("PUT", f"{path}-2", put_body(filled.source_id))["status"] == "ok"
    assert editor.ok("POST", f"{path}/export", {"limit": 1})["status"] == "ok"

    denied = editor.call("POST", path, update)
    assert denied.status == 403 and denied.reason() == "PERMISSION_MISSING"
    assert editor.call("DELETE", f"{path}-2").status == 403
    assert editor.call("GET", f"{path}/model-tags").status == 403
    assert project_admin.ok("POST", path, update)["dataset"]["title"] == "An Alternative Title"
    assert project_admin.ok("GET", f"{path}/model-tags")["status"] == "ok"
    assert project_admin.ok("DELETE", f"{path}-2") == documents.DELETE_ANSWER


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/model-tags", None),
        ("PUT", "", {"dataset": {"title": "t"}}),
        ("POST", "", {"dataset": {"title": "t"}}),
        ("DELETE", "", None),
        ("POST", "/export", {"limit": 1}),
    ],
)
def test_without_or_with_a_bad_token_401(
    admin: Rest, filled: world.Filled, method: str, suffix: str, body: Any
) -> None:
    for token in (None, "crg_1_nope", "not-a-token"):
        answer = admin.as_user(token).call(method, filled.path + suffix, body)
        assert answer.status == 401, answer.text
    assert admin.as_user(None).call("GET", "/api/v1/datasets").status == 401


def test_not_found_404(admin: Rest, filled: world.Filled) -> None:
    missing = f"/api/v1/datasets/{filled.owner}/missing"
    for method, suffix, body in [
        ("GET", "", None),
        ("POST", "", {"dataset": {"title": "t"}}),
        ("DELETE", "", None),
        ("GET", "/model-tags", None),
        ("POST", "/export", {"limit": 1}),
    ]:
        answer = admin.call(method, missing + suffix, body)
        assert answer.status == 404, (method, suffix, answer.text)
        assert answer.reason() == "RESOURCE_NOT_FOUND"
    assert admin.call("GET", "/api/v1/datasets/no-such-project/example").status == 404


def test_bad_bodies_400_name_the_field(admin: Rest, filled: world.Filled) -> None:
    cases: list[tuple[str, str, Any, str]] = [
        ("PUT", "-3", {"dataset": {"source_ids": ["0000000000000000"]}}, "dataset.source_ids[0]"),
        ("PUT", "-3", {"dataset": {"model_family": "klingon"}}, "dataset.model_family"),
        ("POST", "/export", {"limit": 257}, "limit"),
        ("POST", "/export", {"order_by": "size"}, "order_by"),
        ("POST", "/export", {"from": "yesterday"}, "from"),
        ("POST", "/export", {"continuation": "bogus"}, "continuation"),
        ("POST", "/export", {"comment_uids": ["x"] * 257}, "comment_uids"),
    ]
    for method, suffix, body, field in cases:
        answer = admin.call(method, filled.path + suffix, body)
        assert answer.status == 400, (body, answer.text)
        assert field in answer.violations(), (body, answer.text)
    malformed = admin.call("PUT", filled.path + "-3", data=b"{not json")
    assert malformed.status == 400, malformed.text


def test_existing_dataset_409(admin: Rest, filled: world.Filled) -> None:
    answer = admin.call("PUT", filled.path, put_body(filled.source_id))
    assert answer.status == 409, answer.text
    assert answer.reason() == "RESOURCE_EXISTS"
