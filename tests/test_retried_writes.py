"""The writes the client retries (declared RETRY_IDEMPOTENT) are idempotent: run twice,
they leave the state they left once, on both databases. A second delete answers
NOT_FOUND, which changes nothing either."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from corrigo.client import CorrigoError, api, channel
from corrigo.v1 import (
    admin_pb2,
    correction_pb2,
    datasets_pb2,
    improvement_pb2,
    models_pb2,
    options_pb2,
    practice_pb2,
    sources_pb2,
)
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.comments_pb2 import Label
from tests.conftest import Org
from tests.dataset_helpers import comment
from tests.state_helpers import state
from tests.world_helpers import World, annotating, predictions_request, record_request, world

pytestmark = pytest.mark.asyncio(loop_scope="session")

Call = Callable[[], Awaitable[Any]]
# Given a world, the write to run twice (after any preparing it needs).
Write = Callable[[World], Awaitable[Call]]

# RPCs that only read, by name: run twice they trivially leave the same state.
READS = re.compile(r"(Get|List|Watch|Export|StreamExport|StreamBatch|WhoAmI)")


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def labelling_updates(w: World) -> list[datasets_pb2.LabellingUpdate]:
    assigned = [Label(name="Billing", sentiment="positive")]
    return [datasets_pb2.LabellingUpdate(comment_uid=uid, assigned=assigned) for uid in w.uids()]


def unary(call: Callable[[World], Awaitable[Any]]) -> Write:
    async def prepared(w: World) -> Call:
        return lambda: call(w)

    return prepared


async def _drain(responses: Any) -> None:
    async for _ in responses:
        pass


async def _stream_sync(w: World) -> Call:
    async def chunks() -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
        yield sources_pb2.StreamSyncCommentsRequest(
            owner=w.owner, name="src", comments=[comment("c0", 5, "moved"), comment("new")]
        )

    return lambda: _drain(w.admin.sources.StreamSyncComments(chunks()))


async def _stream_labellings(w: World) -> Call:
    async def chunks() -> AsyncIterator[datasets_pb2.StreamUpdateLabellingsRequest]:
        yield datasets_pb2.StreamUpdateLabellingsRequest(
            owner=w.owner, name="ds", labellings=labelling_updates(w)
        )

    return lambda: _drain(w.admin.datasets.StreamUpdateLabellings(chunks()))


async def _delete_project(w: World) -> Call:
    empty = await w.org.project()
    return lambda: w.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=empty.id))


async def _revoke_token(w: World) -> Call:
    made = await w.admin.admin.CreateApiToken(
        admin_pb2.CreateApiTokenRequest(user_id=w.user_id, description="spare")
    )
    request = admin_pb2.RevokeApiTokenRequest(token_id=made.api_token.id)
    return lambda: w.admin.admin.RevokeApiToken(request)


async def _member(w: World) -> Call:
    await w.admin.admin.SetMember(
        admin_pb2.SetMemberRequest(project_id=w.project.id, user_id=w.user_id, role=Member.VIEWER)
    )
    request = admin_pb2.RemoveMemberRequest(project_id=w.project.id, user_id=w.user_id)
    return lambda: w.admin.admin.RemoveMember(request)


async def _use_session(w: World) -> Call:
    await w.admin.practice.RecordResponse(record_request(w))
    request = improvement_pb2.UseSessionForImprovementRequest(session_id=w.session_id)
    return lambda: w.admin.improvement.UseSessionForImprovement(request)


async def _release(w: World) -> Call:
    await (await _use_session(w))()
    request = improvement_pb2.ReleaseBatchRequest(release_id=f"release-{w.project.id}")
    return lambda: w.admin.improvement.ReleaseBatch(request)


async def _delete_correction_session(given: World) -> Call:
    w, session = await annotating(given.org)
    request = correction_pb2.DeleteCorrectionSessionRequest(
        project_id=w.project.id, session_id=session.id
    )
    get = correction_pb2.GetCorrectionSessionRequest(project_id=w.project.id, session_id=session.id)

    async def delete() -> None:
        await w.admin.corrections.DeleteCorrectionSession(request)
        # Its deletion runs in the background: the state is compared once it is gone.
        for _ in range(200):
            try:
                await w.admin.corrections.GetCorrectionSession(get)
            except CorrigoError as error:
                assert error.code == grpc.StatusCode.NOT_FOUND
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the correction session was never deleted")

    return delete


WRITES: dict[str, Write] = {
    "DeleteProject": _delete_project,
    "SetMember": unary(
        lambda w: w.admin.admin.SetMember(
            admin_pb2.SetMemberRequest(
                project_id=w.project.id, user_id=w.user_id, role=Member.EDITOR
            )
        )
    ),
    "RemoveMember": _member,
    "RevokeApiToken": _revoke_token,
    "UpdatePracticeClass": unary(
        lambda w: w.admin.catalog.UpdatePracticeClass(
            practice_pb2.UpdatePracticeClassRequest(
                class_id=w.class_id,
                practice_class=practice_pb2.PracticeClass(name="renamed", model_names=["b"]),
                update_mask=mask("name", "model_names"),
            )
        )
    ),
    "UpdatePracticeAgent": unary(
        lambda w: w.admin.catalog.UpdatePracticeAgent(
            practice_pb2.UpdatePracticeAgentRequest(
                agent_id=w.agent_id,
                agent=practice_pb2.PracticeAgent(
                    name="renamed", few_shot_example_ids=[w.example_id]
                ),
                update_mask=mask("name", "few_shot_example_ids"),
            )
        )
    ),
    "UpdateKnowledgeItem": unary(
        lambda w: w.admin.catalog.UpdateKnowledgeItem(
            practice_pb2.UpdateKnowledgeItemRequest(
                knowledge_id=w.knowledge_id,
                knowledge_item=practice_pb2.KnowledgeItem(title="renamed"),
                update_mask=mask("title"),
            )
        )
    ),
    "DeletePracticeClass": unary(
        lambda w: w.admin.catalog.DeletePracticeClass(
            practice_pb2.DeletePracticeClassRequest(class_id=w.class_id)
        )
    ),
    "DeletePracticeAgent": unary(
        lambda w: w.admin.catalog.DeletePracticeAgent(
            practice_pb2.DeletePracticeAgentRequest(agent_id=w.agent_id)
        )
    ),
    "DeleteKnowledgeItem": unary(
        lambda w: w.admin.catalog.DeleteKnowledgeItem(
            practice_pb2.DeleteKnowledgeItemRequest(knowledge_id=w.knowledge_id)
        )
    ),
    "UpdateFewShotExample": unary(
        lambda w: w.admin.examples.UpdateFewShotExample(
            practice_pb2.UpdateFewShotExampleRequest(
                example_id=w.example_id,
                example=practice_pb2.FewShotExample(input_text="again"),
                update_mask=mask("input_text"),
            )
        )
    ),
    "DeleteFewShotExample": unary(
        lambda w: w.admin.examples.DeleteFewShotExample(
            practice_pb2.DeleteFewShotExampleRequest(example_id=w.example_id)
        )
    ),
    "UpdatePracticeSession": unary(
        lambda w: w.admin.practice.UpdatePracticeSession(
            json_format.ParseDict(
                {
                    "session_id": w.session_id,
                    "title": "renamed",
                    "agent_id": w.agent_id,
                    "knowledge_ids": [w.knowledge_id],
                    "update_mask": "title,agentId,knowledgeIds",
                },
                practice_pb2.UpdatePracticeSessionRequest(),
            )
        )
    ),
    "UpdatePracticeSettings": unary(
        lambda w: w.admin.practice.UpdatePracticeSettings(
            practice_pb2.UpdatePracticeSettingsRequest(
                session_id=w.session_id,
                style_preset="friendly",
                few_shot_example_ids=[w.example_id],
                update_mask=mask("style_preset", "few_shot_example_ids"),
            )
        )
    ),
    "DeletePracticeSession": unary(
        lambda w: w.admin.practice.DeletePracticeSession(
            practice_pb2.DeletePracticeSessionRequest(session_id=w.session_id)
        )
    ),
    "UseSessionForImprovement": _use_session,
    "ReleaseBatch": _release,
    "UpdateDataset": unary(
        lambda w: w.admin.datasets.UpdateDataset(
            datasets_pb2.UpdateDatasetRequest(
                owner=w.owner,
                name="ds",
                dataset=datasets_pb2.Dataset(title="t", source_ids=[w.source.id]),
                update_mask=mask("title", "source_ids"),
            )
        )
    ),
    "DeleteDataset": unary(
        lambda w: w.admin.datasets.DeleteDataset(
            datasets_pb2.DeleteDatasetRequest(owner=w.owner, name="ds")
        )
    ),
    "CreateLabelDefs": unary(
        lambda w: w.admin.datasets.CreateLabelDefs(
            datasets_pb2.CreateLabelDefsRequest(
                owner=w.owner, name="ds", label_defs=[datasets_pb2.LabelDef(name="Refund > Late")]
            )
        )
    ),
    "DeleteLabelDef": unary(
        lambda w: w.admin.datasets.DeleteLabelDef(
            datasets_pb2.DeleteLabelDefRequest(owner=w.owner, name="ds", label_name="Billing")
        )
    ),
    "UpdateLabelling": unary(
        lambda w: w.admin.datasets.UpdateLabelling(
            datasets_pb2.UpdateLabellingRequest(
                owner=w.owner,
                name="ds",
                comment_uid=w.uids()[0],
                assigned=[Label(name="Billing", sentiment="positive")],
            )
        )
    ),
    "BatchUpdateLabellings": unary(
        lambda w: w.admin.datasets.BatchUpdateLabellings(
            datasets_pb2.BatchUpdateLabellingsRequest(
                owner=w.owner, name="ds", labellings=labelling_updates(w)
            )
        )
    ),
    "StreamUpdateLabellings": _stream_labellings,
    "UpdateSource": unary(
        lambda w: w.admin.sources.UpdateSource(
            sources_pb2.UpdateSourceRequest(
                owner=w.owner,
                name="src",
                source=sources_pb2.Source(title="t"),
                update_mask=mask("title"),
            )
        )
    ),
    "DeleteSource": unary(
        lambda w: w.admin.sources.DeleteSource(
            sources_pb2.DeleteSourceRequest(owner=w.owner, name="src")
        )
    ),
    "SyncComments": unary(
        lambda w: w.admin.sources.SyncComments(
            sources_pb2.SyncCommentsRequest(
                owner=w.owner, name="src", comments=[comment("c0", 5, "moved"), comment("new")]
            )
        )
    ),
    "StreamSyncComments": _stream_sync,
    "DeleteComments": unary(
        lambda w: w.admin.sources.DeleteComments(
            sources_pb2.DeleteCommentsRequest(owner=w.owner, name="src", ids=w.comment_ids[:2])
        )
    ),
    "UploadPredictions": unary(lambda w: w.admin.models.UploadPredictions(predictions_request(w))),
    "SetModelTag": unary(
        lambda w: w.admin.models.SetModelTag(
            models_pb2.SetModelTagRequest(owner=w.owner, dataset="ds", name="prod", version=1)
        )
    ),
    "DeleteCorrectionSession": _delete_correction_session,
    "DeleteDocumentGroup": unary(
        lambda w: w.admin.document_groups.DeleteDocumentGroup(
            correction_pb2.DeleteDocumentGroupRequest(project_id=w.project.id, group_id=w.group_id)
        )
    ),
}


async def test_every_retried_write_is_tried_here() -> None:
    retried_writes = {
        m.name
        for m in api.methods()
        if channel.retry_of(m) == options_pb2.RETRY_IDEMPOTENT and not READS.match(m.name)
    }
    assert retried_writes == WRITES.keys()


@pytest.mark.parametrize("rpc", sorted(WRITES))
async def test_a_retried_write_run_twice_leaves_the_state_of_once(org: Org, rpc: str) -> None:
    write = await WRITES[rpc](await world(org))
    await write()
    once = await state()
    try:
        await write()
    except CorrigoError as error:  # a delete's second run: the row is gone already
        assert error.code == grpc.StatusCode.NOT_FOUND, error
    assert await state() == once
