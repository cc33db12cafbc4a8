"""Creates answered once per request id (AIP-155), on both databases: the same id from the
same caller within a day answers the first result and writes nothing more."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from corrigo.client import AsyncClient, CorrigoError, api, channel
from corrigo.server.store import request_ids
from corrigo.server.store.database import database, utcnow
from corrigo.server.store.request_ids import RequestId
from corrigo.v1 import (
    admin_pb2,
    correction_pb2,
    datasets_pb2,
    models_pb2,
    options_pb2,
    practice_pb2,
    sources_pb2,
)
from corrigo.v1.admin_pb2 import Member, User
from tests.conftest import Org
from tests.state_helpers import state
from tests.world_helpers import World, prepared, record_request, world

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# A valid request of each create that takes a request id, in a world of rows.
CREATES: dict[str, Callable[[World], Message]] = {
    "CreateProject": lambda w: admin_pb2.CreateProjectRequest(
        project=admin_pb2.Project(name=_unique("p"))
    ),
    "CreateUser": lambda w: admin_pb2.CreateUserRequest(
        user=User(email=f"{_unique('u')}@{w.org.name}.test", role=User.MEMBER)
    ),
    "CreatePracticeClass": lambda w: practice_pb2.CreatePracticeClassRequest(
        practice_class=practice_pb2.PracticeClass(
            project_id=w.project.id, name="Other", model_names=["m"]
        )
    ),
    "CreatePracticeAgent": lambda w: practice_pb2.CreatePracticeAgentRequest(
        agent=practice_pb2.PracticeAgent(project_id=w.project.id, name="Other")
    ),
    "CreateKnowledgeItem": lambda w: practice_pb2.CreateKnowledgeItemRequest(
        knowledge_item=practice_pb2.KnowledgeItem(project_id=w.project.id, title="other")
    ),
    "CreateFewShotExample": lambda w: practice_pb2.CreateFewShotExampleRequest(
        example=practice_pb2.FewShotExample(input_text="q", output_text="a")
    ),
    "CreatePracticeSession": lambda w: json_format.ParseDict(
        {"project_id": w.project.id, "class_id": w.class_id},
        practice_pb2.CreatePracticeSessionRequest(),
    ),
    "RecordResponse": record_request,
    "CreateDataset": lambda w: datasets_pb2.CreateDatasetRequest(
        owner=w.owner, name="other", dataset=datasets_pb2.Dataset(source_ids=[w.source.id])
    ),
    "CreateSource": lambda w: sources_pb2.CreateSourceRequest(
        owner=w.owner, name="other", source=sources_pb2.Source()
    ),
    "CreateModel": lambda w: models_pb2.CreateModelRequest(
        owner=w.owner,
        dataset="ds",
        model=models_pb2.Model(display_name="other", type=models_pb2.Model.LABEL),
    ),
    "CreateModelVersion": lambda w: models_pb2.CreateModelVersionRequest(
        owner=w.owner, dataset="ds", model_id=w.model_id
    ),
    "CreateCorrectionSession": lambda w: correction_pb2.CreateCorrectionSessionRequest(
        project_id=w.project.id, model_id=w.model_id, document_uids=w.uids(), name="fix"
    ),
    "CreateDocumentGroup": lambda w: correction_pb2.CreateDocumentGroupRequest(
        project_id=w.project.id, name="other", document_uids=w.uids()
    ),
}


async def _prepared(w: World, session: correction_pb2.CorrectionSession) -> None:
    await prepared(w, session.id)


# What to wait for after a create, before its second call: work it started in the background.
SETTLE: dict[str, Callable[[World, Any], Awaitable[None]]] = {"CreateCorrectionSession": _prepared}


def _call(client: AsyncClient, rpc: str) -> Callable[[Message], Awaitable[Any]]:
    (method,) = [m for m in api.methods() if m.name == rpc]
    stubs = {type(stub).__name__: stub for stub in vars(client).values()}
    return getattr(stubs[f"{method.containing_service.name}Stub"], rpc)  # type: ignore[no-any-return]


async def test_every_create_by_request_id_is_tried_here() -> None:
    declared = {
        m.name for m in api.methods() if channel.retry_of(m) == options_pb2.RETRY_REQUEST_ID
    }
    assert declared == CREATES.keys()


@pytest.mark.parametrize("rpc", sorted(CREATES))
async def test_the_same_request_id_answers_the_first_result_and_writes_nothing(
    org: Org, rpc: str
) -> None:
    w = await world(org)
    request = CREATES[rpc](w)
    request.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    call = _call(org.admin, rpc)
    first = await call(request)
    if rpc in SETTLE:
        await SETTLE[rpc](w, first)
    before = await state()
    assert await call(request) == first
    assert await state() == before


async def test_twins_sent_together_create_once(org: Org) -> None:
    request = admin_pb2.CreateProjectRequest(
        project=admin_pb2.Project(name=_unique("twin")), request_id=str(uuid.uuid4())
    )
    answers = await asyncio.gather(*(org.admin.admin.CreateProject(request) for _ in range(4)))
    assert len({answer.id for answer in answers}) == 1


async def test_a_malformed_request_id_is_invalid_and_creates_nothing(org: Org) -> None:
    name = _unique("bad")
    for malformed in ("not-a-uuid", "123e4567e89b42d3a456426614174000", "x" * 2000):
        with pytest.raises(CorrigoError) as error:
            await org.admin.admin.CreateProject(
                admin_pb2.CreateProjectRequest(
                    project=admin_pb2.Project(name=name), request_id=malformed
                )
            )
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.fields == ["request_id"]
    listed = await org.admin.admin.ListProjects(admin_pb2.ListProjectsRequest())
    assert name not in [p.name for p in listed.projects]


async def test_a_failed_create_keeps_nothing_so_its_retry_acts(org: Org) -> None:
    request_id = str(uuid.uuid4())
    taken = await org.project()
    with pytest.raises(CorrigoError) as error:
        await org.admin.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=taken, request_id=request_id)
        )
    assert error.value.code == grpc.StatusCode.ALREADY_EXISTS
    name = _unique("fixed")
    created = await org.admin.admin.CreateProject(
        admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=name), request_id=request_id)
    )
    assert created.name == name


async def test_ids_are_the_callers_own(org: Org) -> None:
    request = practice_pb2.CreateFewShotExampleRequest(
        example=practice_pb2.FewShotExample(input_text="q", output_text="a"),
        request_id=str(uuid.uuid4()),
    )
    _, other = await org.user()
    mine = await org.admin.examples.CreateFewShotExample(request)
    theirs = await other.examples.CreateFewShotExample(request)
    assert mine.example_id != theirs.example_id
    # And per RPC: the same id on another create acts.
    project = await org.admin.admin.CreateProject(
        admin_pb2.CreateProjectRequest(
            project=admin_pb2.Project(name=_unique("p")), request_id=request.request_id
        )
    )
    assert project.id


async def test_a_caller_who_lost_the_permission_is_denied_not_answered(org: Org) -> None:
    project = await org.project()
    user_id, editor = await org.member(project.id, Member.EDITOR)
    request = sources_pb2.CreateSourceRequest(
        owner=project.name, name="inbox", source=sources_pb2.Source(), request_id=str(uuid.uuid4())
    )
    await editor.sources.CreateSource(request)
    await org.admin.admin.SetMember(
        admin_pb2.SetMemberRequest(project_id=project.id, user_id=user_id, role=Member.VIEWER)
    )
    with pytest.raises(CorrigoError) as error:
        await editor.sources.CreateSource(request)
    assert error.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_an_id_older_than_a_day_acts_again_and_is_swept(org: Org) -> None:
    request = practice_pb2.CreateFewShotExampleRequest(
        example=practice_pb2.FewShotExample(input_text="q", output_text="a"),
        request_id=str(uuid.uuid4()),
    )
    first = await org.admin.examples.CreateFewShotExample(request)
    old = utcnow() - request_ids.KEPT - datetime.timedelta(minutes=1)
    mine = RequestId.request_id == request.request_id
    await database.aexecute(RequestId.update(created_at=old).where(mine))
    second = await org.admin.examples.CreateFewShotExample(request)
    assert second.example_id != first.example_id
    assert await org.admin.examples.CreateFewShotExample(request) == second

    await database.aexecute(RequestId.update(created_at=old).where(mine))
    assert await request_ids.sweep() >= 1
    assert await database.list(RequestId.select().where(mine)) == []
