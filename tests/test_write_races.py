"""Every write RPC raced against the delete of each row it refers to, on both databases.

Each case starts the write and the delete together, ROUNDS times on fresh rows: the
write answers only codes its proto comment documents (OK; NOT_FOUND naming what was
deleted; INVALID_ARGUMENT where the call checks a reference it is given before it
writes, as for any reference that does not exist), never INTERNAL or UNKNOWN, and the
delete answers only its own documented codes.

Writes with no row that a call can delete under them are not raced: CreateProject,
CreateUser and CreateApiToken (organizations and users are never deleted),
RevokeApiToken (a token is revoked, never deleted), CreateFewShotExample (its owner is
never deleted), ReleaseBatch (batches are never deleted) and the deletes themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from corrigo.client import CorrigoError
from corrigo.server.api.errors import AlreadyExists
from corrigo.server.store import integrity
from corrigo.server.store.database import atomic, database
from corrigo.server.store.integrity import Kind, Unique, Violation
from corrigo.server.store.practice_sessions import PracticeEvent
from corrigo.server.store.projects import Project as ProjectRow
from corrigo.v1 import (
    admin_pb2,
    correction_pb2,
    datasets_pb2,
    improvement_pb2,
    models_pb2,
    practice_pb2,
    sources_pb2,
)
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.comments_pb2 import Label
from tests.conftest import Org, Running
from tests.dataset_helpers import comment
from tests.world_helpers import (
    World,
    annotating,
    bare,
    predictions_request,
    record_request,
    recorded,
    world,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

# How many times each pair is raced (the reproductions needed up to 20).
ROUNDS = int(os.environ.get("CORRIGO_RACE_ROUNDS", "20"))

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
# A write that refers to a row by id answers NOT_FOUND whenever it is gone.
GONE = frozenset({OK, NOT_FOUND})
# A write that checks the references it is given first answers INVALID_ARGUMENT for one
# gone by then, NOT_FOUND for one deleted while it writes.
CHECKED = frozenset({OK, NOT_FOUND, INVALID_ARGUMENT})
# DeleteProject refuses a project that holds data (FAILED_PRECONDITION): the write won.
HOLDS_DATA = frozenset({OK, FAILED_PRECONDITION})

Call = Callable[[], Awaitable[Any]]


async def answer_of(call: Call) -> tuple[grpc.StatusCode, str]:
    """The call's code and message; never INTERNAL or UNKNOWN."""
    try:
        await call()
    except CorrigoError as error:
        code, message = error.code, error.message
    else:
        return OK, ""
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (code, message)
    return code, message


Prepare = Callable[[World], Awaitable[tuple[Call, Call]]]


async def race(
    org: Org,
    prepare: Prepare,
    write_codes: frozenset[grpc.StatusCode] = GONE,
    delete_codes: frozenset[grpc.StatusCode] = frozenset({OK}),
    build: Callable[[Org], Awaitable[World]] = world,
    rounds: int = ROUNDS,
) -> set[grpc.StatusCode]:
    """Race the write against the delete `rounds` times, each on fresh rows (`build`);
    the codes the write answered."""
    seen = set()
    for _ in range(rounds):
        write, delete = await prepare(await build(org))
        (write_code, said), (delete_code, _) = await asyncio.gather(
            answer_of(write), answer_of(delete)
        )
        assert write_code in write_codes, (write_code, said)
        assert delete_code in delete_codes, delete_code
        if write_code == NOT_FOUND:
            assert said, "a NOT_FOUND names what is missing"
        seen.add(write_code)
    return seen


# The deletes a write may race.


def delete_project(w: World) -> Call:
    request = admin_pb2.DeleteProjectRequest(project_id=w.project.id)
    return lambda: w.admin.admin.DeleteProject(request)


def delete_source(w: World) -> Call:
    request = sources_pb2.DeleteSourceRequest(owner=w.owner, name="src")
    return lambda: w.admin.sources.DeleteSource(request)


def delete_comments(w: World) -> Call:
    request = sources_pb2.DeleteCommentsRequest(owner=w.owner, name="src", ids=w.comment_ids)
    return lambda: w.admin.sources.DeleteComments(request)


def delete_dataset(w: World) -> Call:
    request = datasets_pb2.DeleteDatasetRequest(owner=w.owner, name="ds")
    return lambda: w.admin.datasets.DeleteDataset(request)


def delete_group(w: World) -> Call:
    request = correction_pb2.DeleteDocumentGroupRequest(
        project_id=w.project.id, group_id=w.group_id
    )
    return lambda: w.admin.document_groups.DeleteDocumentGroup(request)


def delete_class(w: World) -> Call:
    request = practice_pb2.DeletePracticeClassRequest(class_id=w.class_id)
    return lambda: w.admin.catalog.DeletePracticeClass(request)


def delete_agent(w: World) -> Call:
    request = practice_pb2.DeletePracticeAgentRequest(agent_id=w.agent_id)
    return lambda: w.admin.catalog.DeletePracticeAgent(request)


def delete_knowledge(w: World) -> Call:
    request = practice_pb2.DeleteKnowledgeItemRequest(knowledge_id=w.knowledge_id)
    return lambda: w.admin.catalog.DeleteKnowledgeItem(request)


def delete_example(w: World) -> Call:
    request = practice_pb2.DeleteFewShotExampleRequest(example_id=w.example_id)
    return lambda: w.admin.examples.DeleteFewShotExample(request)


def delete_session(w: World) -> Call:
    request = practice_pb2.DeletePracticeSessionRequest(session_id=w.session_id)
    return lambda: w.admin.practice.DeletePracticeSession(request)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# AdminService.


async def test_set_member_racing_delete_project(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = admin_pb2.SetMemberRequest(
            project_id=w.project.id, user_id=w.user_id, role=Member.EDITOR
        )
        return lambda: w.admin.admin.SetMember(request), delete_project(w)

    await race(org, prepare, build=bare)


async def test_remove_member_racing_delete_project(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        await w.admin.admin.SetMember(
            admin_pb2.SetMemberRequest(
                project_id=w.project.id, user_id=w.user_id, role=Member.EDITOR
            )
        )
        request = admin_pb2.RemoveMemberRequest(project_id=w.project.id, user_id=w.user_id)
        return lambda: w.admin.admin.RemoveMember(request), delete_project(w)

    await race(org, prepare, build=bare)


# PracticeCatalogService and FewShotExampleService.


CATALOG_CREATES: dict[str, Callable[[World], Call]] = {
    "CreatePracticeClass": lambda w: (
        lambda: w.admin.catalog.CreatePracticeClass(
            practice_pb2.CreatePracticeClassRequest(
                practice_class=practice_pb2.PracticeClass(
                    project_id=w.project.id, name="c", model_names=["m"]
                )
            )
        )
    ),
    "CreatePracticeAgent": lambda w: (
        lambda: w.admin.catalog.CreatePracticeAgent(
            practice_pb2.CreatePracticeAgentRequest(
                agent=practice_pb2.PracticeAgent(project_id=w.project.id, name="a")
            )
        )
    ),
    "CreateKnowledgeItem": lambda w: (
        lambda: w.admin.catalog.CreateKnowledgeItem(
            practice_pb2.CreateKnowledgeItemRequest(
                knowledge_item=practice_pb2.KnowledgeItem(project_id=w.project.id, title="k")
            )
        )
    ),
}


@pytest.mark.parametrize("rpc", sorted(CATALOG_CREATES))
async def test_catalog_create_racing_delete_project(org: Org, rpc: str) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        return CATALOG_CREATES[rpc](w), delete_project(w)

    await race(org, prepare, delete_codes=HOLDS_DATA, build=bare)


async def test_create_agent_racing_delete_example(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.CreatePracticeAgentRequest(
            agent=practice_pb2.PracticeAgent(
                project_id=w.project.id, name="b", few_shot_example_ids=[w.example_id]
            )
        )
        return lambda: w.admin.catalog.CreatePracticeAgent(request), delete_example(w)

    await race(org, prepare)


async def test_update_class_racing_its_delete(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdatePracticeClassRequest(
            class_id=w.class_id,
            practice_class=practice_pb2.PracticeClass(name="renamed"),
            update_mask=mask("name"),
        )
        return lambda: w.admin.catalog.UpdatePracticeClass(request), delete_class(w)

    await race(org, prepare)


async def test_update_agent_racing_its_delete(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdatePracticeAgentRequest(
            agent_id=w.agent_id,
            agent=practice_pb2.PracticeAgent(name="renamed"),
            update_mask=mask("name"),
        )
        return lambda: w.admin.catalog.UpdatePracticeAgent(request), delete_agent(w)

    await race(org, prepare)


async def test_update_agent_racing_delete_example(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdatePracticeAgentRequest(
            agent_id=w.agent_id,
            agent=practice_pb2.PracticeAgent(few_shot_example_ids=[w.example_id]),
            update_mask=mask("few_shot_example_ids"),
        )
        return lambda: w.admin.catalog.UpdatePracticeAgent(request), delete_example(w)

    await race(org, prepare)


async def test_update_knowledge_item_racing_its_delete(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdateKnowledgeItemRequest(
            knowledge_id=w.knowledge_id,
            knowledge_item=practice_pb2.KnowledgeItem(title="renamed"),
            update_mask=mask("title"),
        )
        return lambda: w.admin.catalog.UpdateKnowledgeItem(request), delete_knowledge(w)

    await race(org, prepare)


async def test_update_example_racing_its_delete(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdateFewShotExampleRequest(
            example_id=w.example_id,
            example=practice_pb2.FewShotExample(input_text="again"),
            update_mask=mask("input_text"),
        )
        return lambda: w.admin.examples.UpdateFewShotExample(request), delete_example(w)

    await race(org, prepare)


# PracticeSessionService and ImprovementService.


def create_session(w: World) -> Call:
    request = json_format.ParseDict(
        {
            "project_id": w.project.id,
            "class_id": w.class_id,
            "agent_id": w.agent_id,
            "knowledge_ids": [w.knowledge_id],
        },
        practice_pb2.CreatePracticeSessionRequest(),
    )
    return lambda: w.admin.practice.CreatePracticeSession(request)


@pytest.mark.parametrize(
    "delete",
    [delete_class, delete_agent, delete_knowledge, delete_example],
    ids=["DeletePracticeClass", "DeletePracticeAgent", "DeleteKnowledgeItem", "DeleteExample"],
)
async def test_create_session_racing_delete_of_a_reference(
    org: Org, delete: Callable[[World], Call]
) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        return create_session(w), delete(w)

    await race(org, prepare)


async def test_create_session_racing_delete_project(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = json_format.ParseDict(
            {"project_id": w.project.id}, practice_pb2.CreatePracticeSessionRequest()
        )
        return lambda: w.admin.practice.CreatePracticeSession(request), delete_project(w)

    await race(org, prepare, delete_codes=HOLDS_DATA, build=bare)


# The delete, and the field the update writes.
UPDATE_SESSION: dict[str, tuple[str, Callable[[World], Call]]] = {
    "DeletePracticeSession": ("title", delete_session),
    "DeleteKnowledgeItem": ("knowledge_ids", delete_knowledge),
    "DeletePracticeClass": ("class_id", delete_class),
    "DeletePracticeAgent": ("agent_id", delete_agent),
}


@pytest.mark.parametrize("deleted", sorted(UPDATE_SESSION))
async def test_update_session_racing_delete(org: Org, deleted: str) -> None:
    written, delete = UPDATE_SESSION[deleted]

    async def prepare(w: World) -> tuple[Call, Call]:
        values = {
            "session_id": w.session_id,
            "knowledge_ids": [w.knowledge_id],
            "class_id": w.class_id,
            "agent_id": w.agent_id,
            "title": "renamed",
        }
        request = json_format.ParseDict(values, practice_pb2.UpdatePracticeSessionRequest())
        request.update_mask.paths.append(written)
        return lambda: w.admin.practice.UpdatePracticeSession(request), delete(w)

    await race(org, prepare)


@pytest.mark.parametrize("deleted", ["DeletePracticeSession", "DeleteFewShotExample"])
async def test_update_settings_racing_delete(org: Org, deleted: str) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.UpdatePracticeSettingsRequest(
            session_id=w.session_id,
            style_preset="friendly",
            few_shot_example_ids=[w.example_id],
            update_mask=mask("style_preset", "few_shot_example_ids"),
        )
        delete = delete_session if deleted == "DeletePracticeSession" else delete_example
        return lambda: w.admin.practice.UpdatePracticeSettings(request), delete(w)

    await race(org, prepare)


async def test_record_response_racing_delete_session(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = record_request(w)
        return lambda: w.admin.practice.RecordResponse(request), delete_session(w)

    await race(org, prepare)


async def test_append_events_racing_delete_session(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = practice_pb2.AppendEventsRequest(
            session_id=w.session_id,
            events=[practice_pb2.PracticeEvent(type=practice_pb2.PracticeEvent.NOTE, text="n")],
        )
        return lambda: w.admin.practice.AppendEvents(request), delete_session(w)

    await race(org, prepare)


async def test_use_for_improvement_racing_delete_session(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = improvement_pb2.UseSessionForImprovementRequest(session_id=w.session_id)
        return lambda: w.admin.improvement.UseSessionForImprovement(request), delete_session(w)

    # Scheduled first, the session cannot be deleted (FAILED_PRECONDITION SESSION_SCHEDULED).
    await race(org, prepare, delete_codes=HOLDS_DATA, build=recorded)


# DatasetService.


async def test_create_dataset_racing_delete_source(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.CreateDatasetRequest(
            owner=w.owner, name="d0", dataset=datasets_pb2.Dataset(source_ids=[w.source.id])
        )
        return lambda: w.admin.datasets.CreateDataset(request), delete_source(w)

    codes = await race(org, prepare, CHECKED)
    assert grpc.StatusCode.ALREADY_EXISTS not in codes


async def test_create_dataset_racing_delete_project(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.CreateDatasetRequest(
            owner=w.owner, name="d0", dataset=datasets_pb2.Dataset()
        )
        return lambda: w.admin.datasets.CreateDataset(request), delete_project(w)

    await race(org, prepare, delete_codes=HOLDS_DATA, build=bare)


async def test_update_dataset_racing_its_delete(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.UpdateDatasetRequest(
            owner=w.owner,
            name="ds",
            dataset=datasets_pb2.Dataset(title="t"),
            update_mask=mask("title"),
        )
        return lambda: w.admin.datasets.UpdateDataset(request), delete_dataset(w)

    await race(org, prepare)


async def test_update_dataset_racing_delete_source(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.UpdateDatasetRequest(
            owner=w.owner,
            name="ds",
            dataset=datasets_pb2.Dataset(source_ids=[w.source.id]),
            update_mask=mask("source_ids"),
        )
        return lambda: w.admin.datasets.UpdateDataset(request), delete_source(w)

    await race(org, prepare, CHECKED)


async def test_create_label_defs_racing_delete_dataset(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.CreateLabelDefsRequest(
            owner=w.owner, name="ds", label_defs=[datasets_pb2.LabelDef(name="Refund")]
        )
        return lambda: w.admin.datasets.CreateLabelDefs(request), delete_dataset(w)

    await race(org, prepare)


async def test_delete_label_def_racing_delete_dataset(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.DeleteLabelDefRequest(owner=w.owner, name="ds", label_name="Billing")
        return lambda: w.admin.datasets.DeleteLabelDef(request), delete_dataset(w)

    await race(org, prepare)


@pytest.mark.parametrize("deleted", ["DeleteComments", "DeleteDataset"])
async def test_update_labelling_racing_delete(org: Org, deleted: str) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.UpdateLabellingRequest(
            owner=w.owner,
            name="ds",
            comment_uid=w.uids()[0],
            assigned=[Label(name="Billing", sentiment="positive")],
        )
        delete = delete_comments if deleted == "DeleteComments" else delete_dataset
        return lambda: w.admin.datasets.UpdateLabelling(request), delete(w)

    await race(org, prepare)


def labelling_updates(w: World) -> list[datasets_pb2.LabellingUpdate]:
    return [
        datasets_pb2.LabellingUpdate(
            comment_uid=uid, assigned=[Label(name="Billing", sentiment="positive")]
        )
        for uid in w.uids()
    ]


@pytest.mark.parametrize("deleted", ["DeleteComments", "DeleteDataset"])
async def test_batch_update_labellings_racing_delete(org: Org, deleted: str) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = datasets_pb2.BatchUpdateLabellingsRequest(
            owner=w.owner, name="ds", labellings=labelling_updates(w)
        )
        delete = delete_comments if deleted == "DeleteComments" else delete_dataset
        return lambda: w.admin.datasets.BatchUpdateLabellings(request), delete(w)

    # A comment gone before the check is INVALID_ARGUMENT naming labellings[i].comment_uid.
    await race(org, prepare, CHECKED)


@pytest.mark.parametrize("deleted", ["DeleteComments", "DeleteDataset"])
async def test_stream_update_labellings_racing_delete(org: Org, deleted: str) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        async def chunks() -> AsyncIterator[datasets_pb2.StreamUpdateLabellingsRequest]:
            yield datasets_pb2.StreamUpdateLabellingsRequest(
                owner=w.owner, name="ds", labellings=labelling_updates(w)
            )

        async def write() -> None:
            async for _ in w.admin.datasets.StreamUpdateLabellings(chunks()):
                pass

        delete = delete_comments if deleted == "DeleteComments" else delete_dataset
        return write, delete(w)

    await race(org, prepare, CHECKED)


# SourceService.


async def test_create_source_racing_delete_project(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = sources_pb2.CreateSourceRequest(
            owner=w.owner, name="s0", source=sources_pb2.Source()
        )
        return lambda: w.admin.sources.CreateSource(request), delete_project(w)

    await race(org, prepare, delete_codes=HOLDS_DATA, build=bare)


async def test_update_source_racing_its_delete(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = sources_pb2.UpdateSourceRequest(
            owner=w.owner,
            name="src",
            source=sources_pb2.Source(title="t"),
            update_mask=mask("title"),
        )
        return lambda: w.admin.sources.UpdateSource(request), delete_source(w)

    await race(org, prepare)


async def test_sync_comments_racing_delete_source(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = sources_pb2.SyncCommentsRequest(
            owner=w.owner, name="src", comments=[comment("c0", 5, "moved"), comment("new")]
        )
        return lambda: w.admin.sources.SyncComments(request), delete_source(w)

    await race(org, prepare)


async def test_stream_sync_comments_racing_delete_source(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        async def chunks() -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
            yield sources_pb2.StreamSyncCommentsRequest(
                owner=w.owner, name="src", comments=[comment("c0", 5, "moved"), comment("new")]
            )

        async def write() -> None:
            async for _ in w.admin.sources.StreamSyncComments(chunks()):
                pass

        return write, delete_source(w)

    await race(org, prepare)


async def test_delete_comments_racing_delete_source(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        return delete_comments(w), delete_source(w)

    await race(org, prepare)


# ModelService.


MODEL_WRITES: dict[str, Callable[[World], Call]] = {
    "CreateModel": lambda w: (
        lambda: w.admin.models.CreateModel(
            models_pb2.CreateModelRequest(
                owner=w.owner,
                dataset="ds",
                model=models_pb2.Model(display_name="m2", type=models_pb2.Model.LABEL),
            )
        )
    ),
    "CreateModelVersion": lambda w: (
        lambda: w.admin.models.CreateModelVersion(
            models_pb2.CreateModelVersionRequest(
                owner=w.owner, dataset="ds", model_id=w.model_id, validation_score=0.5
            )
        )
    ),
    "UploadPredictions": lambda w: lambda: w.admin.models.UploadPredictions(predictions_request(w)),
    "SetModelTag": lambda w: (
        lambda: w.admin.models.SetModelTag(
            models_pb2.SetModelTagRequest(owner=w.owner, dataset="ds", name="prod", version=1)
        )
    ),
}


@pytest.mark.parametrize("rpc", sorted(MODEL_WRITES))
async def test_model_write_racing_delete_dataset(org: Org, rpc: str) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        return MODEL_WRITES[rpc](w), delete_dataset(w)

    await race(org, prepare)


async def test_upload_predictions_racing_delete_comments(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        return MODEL_WRITES["UploadPredictions"](w), delete_comments(w)

    await race(org, prepare, CHECKED)


# CorrectionSessionService and DocumentGroupService.


async def test_create_document_group_racing_delete_comments(org: Org) -> None:
    async def prepare(w: World) -> tuple[Call, Call]:
        request = correction_pb2.CreateDocumentGroupRequest(
            project_id=w.project.id, name="g2", document_uids=w.uids()
        )
        return lambda: w.admin.document_groups.CreateDocumentGroup(request), delete_comments(w)

    await race(org, prepare, CHECKED)


CORRECTION_DELETES: dict[str, tuple[dict[str, Any], Callable[[World], Call]]] = {
    "DeleteDocumentGroup": ({"document_group_id": True}, delete_group),
    "DeleteComments": ({"document_uids": True}, delete_comments),
    "DeleteDataset": ({}, delete_dataset),
}


@pytest.mark.parametrize("deleted", sorted(CORRECTION_DELETES))
async def test_create_correction_session_racing_delete(org: Org, deleted: str) -> None:
    scope, delete = CORRECTION_DELETES[deleted]

    async def prepare(w: World) -> tuple[Call, Call]:
        request = correction_pb2.CreateCorrectionSessionRequest(
            project_id=w.project.id, model_id=w.model_id, name="fix"
        )
        if "document_group_id" in scope:
            request.document_group_id = w.group_id
        if "document_uids" in scope:
            request.document_uids.extend(w.uids())
        return lambda: w.admin.corrections.CreateCorrectionSession(request), delete(w)

    # Documents deleted before it samples leave none: FAILED_PRECONDITION NO_CANDIDATE_DOCUMENTS.
    await race(org, prepare, CHECKED | {FAILED_PRECONDITION})


@pytest.mark.parametrize("deleted", ["DeleteCorrectionSession", "DeleteComments", "DeleteDataset"])
async def test_submit_correction_racing_delete(org: Org, deleted: str) -> None:
    sessions: dict[int, int] = {}

    async def build(org: Org) -> World:
        w, session = await annotating(org)
        sessions[w.project.id] = session.id
        return w

    async def prepare(w: World) -> tuple[Call, Call]:
        session_id = sessions[w.project.id]
        request = correction_pb2.SubmitCorrectionRequest(
            project_id=w.project.id,
            session_id=session_id,
            document_uid=w.uids()[0],
            assigned=[Label(name="Billing", sentiment="negative")],
        )
        deletes = {
            "DeleteCorrectionSession": lambda: w.admin.corrections.DeleteCorrectionSession(
                correction_pb2.DeleteCorrectionSessionRequest(
                    project_id=w.project.id, session_id=session_id
                )
            ),
            "DeleteComments": delete_comments(w),
            "DeleteDataset": delete_dataset(w),
        }
        return lambda: w.admin.corrections.SubmitCorrection(request), deletes[deleted]

    # Preparing a correction session takes the server a moment: fewer rounds.
    await race(org, prepare, GONE | {FAILED_PRECONDITION}, build=build, rounds=max(1, ROUNDS // 4))


# The drivers' integrity errors, and how guards read them.


async def test_drivers_tell_the_kind_and_place_of_a_violation(server: Running, org: Org) -> None:
    project = await org.project()
    me = await org.admin.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    with pytest.raises(Violation) as missing:
        async with atomic():
            await database.aexecute(PracticeEvent.insert(session=2_000_000_000, type=1, data={}))
    assert missing.value.kind is Kind.FOREIGN_KEY
    if server.db_url.startswith("postgres"):
        # PostgreSQL names the constraint (SQLite does not say which key failed).
        assert missing.value.constraint == "practice_event_session_id_fkey"
    with pytest.raises(Violation) as taken:
        async with atomic():
            await ProjectRow.acreate(organization=me.organization.id, name=project.name)
    assert taken.value.kind is Kind.UNIQUE
    assert (taken.value.table, set(taken.value.columns)) == ("project", {"organization_id", "name"})
    exists = AlreadyExists("taken")
    named = Unique(ProjectRow, [ProjectRow.organization, ProjectRow.name], exists)
    assert await integrity.explained(taken.value, [named]) is exists
    # A violation no guard declares is a bug: it goes on (and is answered INTERNAL).
    other = Unique(ProjectRow, [ProjectRow.name], exists)
    assert await integrity.explained(taken.value, [other]) is None
    assert await integrity.explained(missing.value, []) is None


async def test_messages_name_the_columns() -> None:
    assert integrity.sqlite_unique(
        "UNIQUE constraint failed: dataset.project_id, dataset.name"
    ) == (
        "dataset",
        ("project_id", "name"),
    )
    assert integrity.sqlite_unique("UNIQUE constraint failed: index 'x'") == (None, ())
    assert integrity.postgres_columns("Key (project_id, name)=(1, d0) already exists.") == (
        "project_id",
        "name",
    )
    assert integrity.postgres_columns(None) == ()
