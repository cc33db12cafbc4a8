"""A world of rows for tests that act on every kind of resource: a project with a source
of comments, a dataset over it with a taxonomy and a model version, a document group, a
practice class, agent (with a few-shot example), knowledge item and session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from google.protobuf import json_format

from corrigo.client import AsyncClient
from corrigo.v1 import (
    admin_pb2,
    correction_pb2,
    datasets_pb2,
    models_pb2,
    practice_pb2,
    sources_pb2,
)
from corrigo.v1.admin_pb2 import User
from corrigo.v1.comments_pb2 import PredictedLabel
from tests.conftest import Org
from tests.dataset_helpers import comment, dataset, model_version, source, sync


@dataclass
class World:
    """One round's rows. A full world: a project with a source `src` of comments, a
    dataset `ds` over it with a taxonomy and a model version, a document group of the
    comments, a practice class, agent (with a few-shot example), knowledge item and a
    session of the organization's admin, and a member user. A bare one: the project."""

    org: Org
    project: admin_pb2.Project
    user_id: int
    source: sources_pb2.Source = field(default_factory=sources_pb2.Source)
    comment_ids: list[str] = field(default_factory=list)
    model_id: int = 0
    group_id: int = 0
    class_id: int = 0
    agent_id: int = 0
    example_id: int = 0
    knowledge_id: int = 0
    session_id: int = 0
    session_model_id: int = 0

    @property
    def admin(self) -> AsyncClient:
        return self.org.admin

    @property
    def owner(self) -> str:
        return self.project.name

    def uids(self) -> list[str]:
        return [f"{self.source.id}.{c}" for c in self.comment_ids]


async def bare(org: Org) -> World:
    user = await org.admin.admin.CreateUser(
        admin_pb2.CreateUserRequest(
            user=User(email=f"{uuid.uuid4().hex[:10]}@{org.name}.test", role=User.MEMBER)
        )
    )
    return World(org, await org.project(), user.id)


async def world(org: Org) -> World:
    w = await bare(org)
    admin, owner = org.admin, w.owner
    w.source = await source(admin, owner, "src")
    w.comment_ids = [f"c{i}" for i in range(3)]
    await sync(admin, owner, "src", [comment(c, i) for i, c in enumerate(w.comment_ids)])
    await dataset(admin, owner, [w.source.id], name="ds")
    await admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner, name="ds", label_defs=[datasets_pb2.LabelDef(name="Billing")]
        )
    )
    version = await model_version(admin, owner, "ds")
    w.model_id = version.model_id
    group = await admin.document_groups.CreateDocumentGroup(
        correction_pb2.CreateDocumentGroupRequest(
            project_id=w.project.id, name="group", document_uids=w.uids()
        )
    )
    w.group_id = group.id
    practice_class = await admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=practice_pb2.PracticeClass(
                project_id=w.project.id, name="Support", model_names=["model-a"]
            )
        )
    )
    w.class_id = practice_class.class_id
    example = await admin.examples.CreateFewShotExample(
        practice_pb2.CreateFewShotExampleRequest(
            example=practice_pb2.FewShotExample(input_text="in", output_text="out")
        )
    )
    w.example_id = example.example_id
    agent = await admin.catalog.CreatePracticeAgent(
        practice_pb2.CreatePracticeAgentRequest(
            agent=practice_pb2.PracticeAgent(
                project_id=w.project.id, name="Helper", few_shot_example_ids=[w.example_id]
            )
        )
    )
    w.agent_id = agent.agent_id
    item = await admin.catalog.CreateKnowledgeItem(
        practice_pb2.CreateKnowledgeItemRequest(
            knowledge_item=practice_pb2.KnowledgeItem(project_id=w.project.id, title="faq")
        )
    )
    w.knowledge_id = item.knowledge_id
    session = await admin.practice.CreatePracticeSession(
        json_format.ParseDict(
            {"project_id": w.project.id, "class_id": w.class_id},
            practice_pb2.CreatePracticeSessionRequest(),
        )
    )
    w.session_id = session.session_id
    models = await admin.practice.ListSessionModels(
        practice_pb2.ListSessionModelsRequest(session_id=w.session_id)
    )
    w.session_model_id = models.models[0].session_model_id
    return w


async def recorded(org: Org) -> World:
    """A world whose session holds a prompt and its response (it can be scheduled)."""
    w = await world(org)
    await w.admin.practice.RecordResponse(record_request(w))
    return w


async def prepared(w: World, session_id: int) -> correction_pb2.CorrectionSession:
    """The world's correction session once its background preparation made it ANNOTATING."""
    call = w.admin.corrections.WatchCorrectionSession(
        correction_pb2.WatchCorrectionSessionRequest(project_id=w.project.id, session_id=session_id)
    )
    Status = correction_pb2.CorrectionSession.Status
    try:
        async for change in call:
            if change.session.status in (Status.ANNOTATING, Status.FAILED):
                assert change.session.status == Status.ANNOTATING
                return change.session
    finally:
        call.cancel()
    raise AssertionError("the correction session was never prepared")


async def annotating(org: Org) -> tuple[World, correction_pb2.CorrectionSession]:
    """A world with a correction session of all its comments, once it is ANNOTATING."""
    w = await world(org)
    created = await w.admin.corrections.CreateCorrectionSession(
        correction_pb2.CreateCorrectionSessionRequest(
            project_id=w.project.id, model_id=w.model_id, document_uids=w.uids(), name="fix"
        )
    )
    return w, await prepared(w, created.id)


def record_request(w: World) -> practice_pb2.RecordResponseRequest:
    return practice_pb2.RecordResponseRequest(
        session_id=w.session_id,
        session_model_id=w.session_model_id,
        prompt_text="hi",
        response_text="hello",
        latency_ms=5,
    )


def predictions_request(w: World) -> models_pb2.UploadPredictionsRequest:
    """Predictions of the world's model version 1 for each of its comments."""
    return models_pb2.UploadPredictionsRequest(
        owner=w.owner,
        dataset="ds",
        version=1,
        predictions=[
            models_pb2.CommentPredictions(
                uid=uid, labels=[PredictedLabel(name="Billing", probability=0.5)]
            )
            for uid in w.uids()
        ],
    )
