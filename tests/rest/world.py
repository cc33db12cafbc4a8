"""Data the documents' requests need, set up through the gateway's other routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.rest import documents
from tests.rest.gateway import Rest, unique

_EXPORTED = documents.EXPORT_ANSWER["comments"][0]
# The document's example comment (002, export), as synced into a source.
EXAMPLE_COMMENT: dict[str, Any] = {
    key: _EXPORTED["comment"][key]
    for key in ("id", "timestamp", "thread_id", "messages", "user_properties")
}
ASSIGNED: list[dict[str, Any]] = _EXPORTED["annotations"]["labels"]["assigned"]
PREDICTED: list[dict[str, Any]] = _EXPORTED["predictions"]["labels"]


def project(admin: Rest) -> dict[str, Any]:
    """A new project of the admin's organization (its `id` and `name`)."""
    answer: dict[str, Any] = admin.ok("POST", "/api/v1/projects", {"name": unique("p")})
    return answer


def member(admin: Rest, project_id: int, role: str | None) -> Rest:
    """A new user of the organization holding `role` in the project (None: no role there),
    calling with their own token."""
    user = admin.ok("POST", "/api/v1/users", {"email": f"{unique('u')}@example.test"})
    if role:
        admin.ok("PUT", f"/api/v1/projects/{project_id}/members/{user['id']}", {"role": role})
    token = admin.ok("POST", "/api/v1/tokens", {"user_id": user["id"], "description": "rest"})
    return admin.as_user(token["token"])


def source(admin: Rest, owner: str, comments: list[dict[str, Any]]) -> str:
    """A source `emails` of the project holding the comments; its id."""
    created = admin.ok("PUT", f"/api/v1/sources/{owner}/emails", {"source": {"title": "Inbox"}})
    synced = admin.ok("POST", f"/api/v1/sources/{owner}/emails/sync", {"comments": comments})
    assert synced["new"] == len(comments), synced
    return str(created["source"]["id"])


def plain_comment(comment_id: str, day: int) -> dict[str, Any]:
    return {
        "id": comment_id,
        "timestamp": f"2011-12-{day:02d}T09:00:00Z",
        "messages": [{"body": {"text": f"Comment {comment_id}"}}],
    }


@dataclass
class Filled:
    """A project whose dataset `example` holds the document's comment (labelled, with
    predictions) and `more` other comments, and a model with a version tagged prod and
    staging."""

    project_id: int
    owner: str
    source_id: str
    model_id: int

    @property
    def path(self) -> str:
        return f"/api/v1/datasets/{self.owner}/example"


def filled_dataset(
    admin: Rest, more: int = 2, model: dict[str, Any] | None = None, label_all: bool = False
) -> Filled:
    """The project and dataset of `Filled`; `label_all` labels every comment."""
    created = project(admin)
    owner = created["name"]
    comments = [EXAMPLE_COMMENT, *(plain_comment(f"c{i}", 12 + i) for i in range(more))]
    source_id = source(admin, owner, comments)
    path = f"/api/v1/datasets/{owner}/example"
    admin.ok("PUT", path, {"dataset": {"title": "An Example Dataset", "source_ids": [source_id]}})
    names = [label["name"] for label in ASSIGNED + PREDICTED]
    admin.ok("POST", f"{path}/label-defs", {"label_defs": [{"name": n} for n in names]})
    labelled = comments if label_all else comments[:1]
    for comment in labelled:
        uid = f"{source_id}.{comment['id']}"
        admin.ok("POST", f"{path}/labellings/{uid}", {"assigned": ASSIGNED})
    spec = model or {"display_name": "This is my model", "type": "LABEL"}
    model_id = admin.ok("POST", f"{path}/models", spec)["id"]
    version = admin.ok("POST", f"{path}/models/{model_id}/versions", {"validation_score": 0.8})
    number = version["version"]
    predictions = [{"uid": f"{source_id}.{EXAMPLE_COMMENT['id']}", "labels": PREDICTED}]
    admin.ok("POST", f"{path}/model-versions/{number}/predictions", {"predictions": predictions})
    for tag in ("prod", "staging"):
        admin.ok("PUT", f"{path}/model-tags/{tag}", {"version": number})
    return Filled(created["id"], owner, source_id, model_id)


@dataclass
class Catalog:
    """A project with a practice class offering two models, an agent and a knowledge item."""

    project_id: int
    class_id: int
    agent_id: int
    knowledge_id: int

    def session_body(self, title: str = "First chat") -> dict[str, Any]:
        """The practice documents' request body (003 create, 004 PATCH)."""
        return {
            "class_id": self.class_id,
            "project_id": self.project_id,
            "knowledge_ids": [self.knowledge_id],
            "agent_id": self.agent_id,
            "title": title,
            "notes": "trying",
        }


def catalog(admin: Rest) -> Catalog:
    project_id = project(admin)["id"]
    practice_class = {
        "project_id": project_id,
        "name": "Support",
        "model_names": ["gpt-4o", "claude"],
    }
    agent = {"name": "Helper", "instructions": "Be brief.", "style_preset": "accurate"}
    knowledge = {"project_id": project_id, "title": "FAQ", "content": "Seats are adjustable."}
    return Catalog(
        project_id,
        admin.ok("POST", "/practice/classes", practice_class)["class_id"],
        admin.ok("POST", "/practice/agents", agent)["agent_id"],
        admin.ok("POST", "/practice/knowledge", knowledge)["knowledge_id"],
    )


def record_response(caller: Rest, session_id: int) -> dict[str, Any]:
    """A prompt and a response of the session's first model (it logs PROMPT and RESPONSE)."""
    path = f"/user/practice/sessions/{session_id}"
    models = caller.ok("GET", f"{path}/models")["models"]
    recorded = {
        "session_model_id": models[0]["session_model_id"],
        "prompt_text": "Hi",
        "response_text": "Hello!",
        "token_usage": {"prompt": 2, "completion": 3},
        "latency_ms": 420,
    }
    answer: dict[str, Any] = caller.ok("POST", f"{path}/responses", recorded)
    return answer
