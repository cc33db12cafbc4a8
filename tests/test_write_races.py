"""Every write RPC raced against the delete of each row it refers to, on both databases:
the write answers only codes its proto comment documents (OK, or NOT_FOUND naming what
was deleted, ...), never INTERNAL or UNKNOWN, and neither does the delete."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import (
    admin_pb2,
    correction_pb2,
    datasets_pb2,
    improvement_pb2,
    models_pb2,
    practice_pb2,
    sources_pb2,
)
from corrigo.v1.admin_pb2 import Member, User
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from tests.conftest import Org
from tests.dataset_helpers import comment, dataset, model_version, source, sync

pytestmark = pytest.mark.asyncio(loop_scope="session")

# How many times each pair is raced (the reproductions needed up to 20).
ROUNDS = int(os.environ.get("CORRIGO_RACE_ROUNDS", "20"))

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS
ABORTED = grpc.StatusCode.ABORTED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
# For references the call checks first: gone before it checked them.
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT

Call = Callable[[], Awaitable[Any]]


@dataclass
class World:
    """One round's rows: a project with a source of comments, a dataset over it with a
    taxonomy, a model version, and a practice session of the organization's admin."""

    org: Org
    project: admin_pb2.Project
    source: sources_pb2.Source
    comment_ids: list[str]
    session_id: int
    session_model_id: int

    @property
    def admin(self) -> AsyncClient:
        return self.org.admin

    @property
    def owner(self) -> str:
        return self.project.name

    def uid(self, index: int = 0) -> str:
        return f"{self.source.id}.{self.comment_ids[index]}"


async def world(org: Org) -> World:
    admin = org.admin
    project = await org.project()
    src = await source(admin, project.name, "src")
    comment_ids = [f"c{i}" for i in range(3)]
    await sync(admin, project.name, "src", [comment(c, i) for i, c in enumerate(comment_ids)])
    await dataset(admin, project.name, [src.id], name="ds")
    await admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=project.name, name="ds", label_defs=[datasets_pb2.LabelDef(name="Billing")]
        )
    )
    await model_version(admin, project.name, "ds")
    practice_class = await admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=practice_pb2.PracticeClass(
                project_id=project.id, name="Support", model_names=["model-a"]
            )
        )
    )
    session = await admin.practice.CreatePracticeSession(
        json_format.ParseDict(
            {"project_id": project.id, "class_id": practice_class.class_id},
            practice_pb2.CreatePracticeSessionRequest(),
        )
    )
    models = await admin.practice.ListSessionModels(
        practice_pb2.ListSessionModelsRequest(session_id=session.session_id)
    )
    return World(
        org,
        project,
        src,
        comment_ids,
        session.session_id,
        models.models[0].session_model_id,
    )


async def answer_of(call: Call) -> tuple[grpc.StatusCode, str]:
    """The call's code and message; never INTERNAL or UNKNOWN."""
    try:
        await call()
    except CorrigoError as error:
        assert error.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error
        return error.code, error.message
    return OK, ""


async def race(
    org: Org,
    prepare: Callable[[World], tuple[Call, Call]],
    write_codes: set[grpc.StatusCode],
    delete_codes: set[grpc.StatusCode] = frozenset({OK}),  # type: ignore[assignment]
    build: Callable[[Org], Awaitable[World]] = world,
) -> set[grpc.StatusCode]:
    """Race the write against the delete ROUNDS times, each on fresh rows (`build`); the
    codes the write answered."""
    seen = set()
    for _ in range(ROUNDS):
        write, delete = prepare(await build(org))
        (write_code, said), (delete_code, _) = await asyncio.gather(
            answer_of(write), answer_of(delete)
        )
        assert write_code in write_codes, (write_code, said)
        assert delete_code in delete_codes, delete_code
        seen.add(write_code)
    return seen


# The deletes a write may race.


def delete_session(w: World) -> Call:
    return lambda: w.admin.practice.DeletePracticeSession(
        practice_pb2.DeletePracticeSessionRequest(session_id=w.session_id)
    )


def delete_comments(w: World) -> Call:
    return lambda: w.admin.sources.DeleteComments(
        sources_pb2.DeleteCommentsRequest(owner=w.owner, name="src", ids=w.comment_ids)
    )


def delete_source(w: World) -> Call:
    return lambda: w.admin.sources.DeleteSource(
        sources_pb2.DeleteSourceRequest(owner=w.owner, name="src")
    )


def delete_dataset(w: World) -> Call:
    return lambda: w.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=w.owner, name="ds")
    )


def delete_project(w: World) -> Call:
    return lambda: w.admin.admin.DeleteProject(
        admin_pb2.DeleteProjectRequest(project_id=w.project.id)
    )


# Practice sessions.


def record_request(w: World) -> practice_pb2.RecordResponseRequest:
    return practice_pb2.RecordResponseRequest(
        session_id=w.session_id,
        session_model_id=w.session_model_id,
        prompt_text="hi",
        response_text="hello",
        latency_ms=5,
    )


async def test_record_response_racing_delete_session(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = record_request(w)
        return lambda: w.admin.practice.RecordResponse(request), delete_session(w)

    await race(org, prepare, {OK, NOT_FOUND})


async def test_append_events_racing_delete_session(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.AppendEventsRequest(
            session_id=w.session_id,
            events=[practice_pb2.PracticeEvent(type=practice_pb2.PracticeEvent.NOTE, text="n")],
        )
        return lambda: w.admin.practice.AppendEvents(request), delete_session(w)

    await race(org, prepare, {OK, NOT_FOUND})


async def test_update_settings_racing_delete_session(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdatePracticeSettingsRequest(
            session_id=w.session_id,
            style_preset="friendly",
            update_mask=field_mask_pb2.FieldMask(paths=["style_preset"]),
        )
        return lambda: w.admin.practice.UpdatePracticeSettings(request), delete_session(w)

    await race(org, prepare, {OK, NOT_FOUND})


async def test_update_session_racing_delete_session(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = json_format.ParseDict(
            {"session_id": w.session_id, "title": "renamed", "update_mask": "title"},
            practice_pb2.UpdatePracticeSessionRequest(),
        )
        return lambda: w.admin.practice.UpdatePracticeSession(request), delete_session(w)

    await race(org, prepare, {OK, NOT_FOUND})


async def test_use_for_improvement_racing_delete_session(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = improvement_pb2.UseSessionForImprovementRequest(session_id=w.session_id)
        return lambda: w.admin.improvement.UseSessionForImprovement(request), delete_session(w)

    async def recorded(org: Org) -> World:
        # Only a session with a prompt and its response can be scheduled.
        w = await world(org)
        await w.admin.practice.RecordResponse(record_request(w))
        return w

    # Scheduled first, the session cannot be deleted (FAILED_PRECONDITION SESSION_SCHEDULED).
    await race(org, prepare, {OK, NOT_FOUND}, {OK, FAILED_PRECONDITION}, recorded)


# Labellings, predictions and document groups name comments.


async def test_update_labelling_racing_delete_comments(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.UpdateLabellingRequest(
            owner=w.owner, name="ds", comment_uid=w.uid(), assigned=[Label(name="Billing", sentiment="positive")]
        )
        return lambda: w.admin.datasets.UpdateLabelling(request), delete_comments(w)

    await race(org, prepare, {OK, NOT_FOUND})


async def test_upload_predictions_racing_delete_comments(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = models_pb2.UploadPredictionsRequest(
            owner=w.owner,
            dataset="ds",
            version=1,
            predictions=[
                models_pb2.CommentPredictions(
                    uid=w.uid(i), labels=[PredictedLabel(name="Billing", probability=0.5)]
                )
                for i in range(len(w.comment_ids))
            ],
        )
        return lambda: w.admin.models.UploadPredictions(request), delete_comments(w)

    await race(org, prepare, {OK, NOT_FOUND, INVALID_ARGUMENT})


async def test_create_document_group_racing_delete_comments(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = correction_pb2.CreateDocumentGroupRequest(
            project_id=w.project.id,
            name="group",
            document_uids=[w.uid(i) for i in range(len(w.comment_ids))],
        )
        return lambda: w.admin.document_groups.CreateDocumentGroup(request), delete_comments(w)

    await race(org, prepare, {OK, NOT_FOUND, INVALID_ARGUMENT})


# Projects and datasets.


async def test_set_member_racing_delete_project(org: Org) -> None:
    user_id, _ = await org.user(User.MEMBER)

    def prepare(w: World) -> tuple[Call, Call]:
        request = admin_pb2.SetMemberRequest(
            project_id=w.project.id, user_id=user_id, role=Member.EDITOR
        )
        return lambda: w.admin.admin.SetMember(request), delete_project(w)

    # The project still holds data, so its delete is refused; a bare project races below.
    await race(org, prepare, {OK, NOT_FOUND}, {FAILED_PRECONDITION})


async def test_set_member_racing_delete_of_a_bare_project(org: Org) -> None:
    user_id, _ = await org.user(User.MEMBER)
    seen = set()
    for _ in range(ROUNDS):
        project = await org.project(f"bare-{uuid.uuid4().hex[:8]}")
        request = admin_pb2.SetMemberRequest(
            project_id=project.id, user_id=user_id, role=Member.EDITOR
        )
        delete = admin_pb2.DeleteProjectRequest(project_id=project.id)
        (write_code, said), (delete_code, _) = await asyncio.gather(
            answer_of(lambda: org.admin.admin.SetMember(request)),
            answer_of(lambda: org.admin.admin.DeleteProject(delete)),
        )
        assert write_code in {OK, NOT_FOUND} and delete_code == OK, (write_code, said)
        seen.add(write_code)


async def test_create_dataset_racing_delete_source(org: Org) -> None:
    def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.CreateDatasetRequest(
            owner=w.owner, name="d0", dataset=datasets_pb2.Dataset(source_ids=[w.source.id])
        )
        return lambda: w.admin.datasets.CreateDataset(request), delete_source(w)

    await race(org, prepare, {OK, NOT_FOUND, INVALID_ARGUMENT})
