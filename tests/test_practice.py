"""Practice: catalog, few-shot examples, sessions, settings, responses and events,
through the real server on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, wrappers_pb2

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.errors import NotFound
from corrigo.server.api.permissions import RULES
from corrigo.server.store import practice_sessions
from corrigo.server.store.database import database
from corrigo.server.store.practice_sessions import NewSession, PracticeSession
from corrigo.v1 import admin_pb2, practice_pb2
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.practice_pb2 import (
    PracticeAgent,
    PracticeClass,
    PracticeEvent,
)
from corrigo.v1.practice_pb2 import (
    PracticeSession as Session,
)
from tests.conftest import Org
from tests.shapes import assert_same_shape

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The create document's example answer (003), with the values it shows.
DOCUMENT_ANSWER = json.loads("""
{
  "session_id": 123, "user_id": 123,
  "created_at": "2023-11-07T05:31:56Z", "updated_at": "2023-11-07T05:31:56Z",
  "class_id": 123, "project_id": 123, "knowledge_ids": [123], "agent_id": 123,
  "title": "<string>", "notes": "<string>",
  "settings": {
    "setting_id": 123, "session_id": 123,
    "created_at": "2023-11-07T05:31:56Z", "updated_at": "2023-11-07T05:31:56Z",
    "style_preset": "accurate", "style_params": {}, "generation_params": {},
    "agent_snapshot": {},
    "few_shot_links": [{
      "id": 123, "setting_id": 123, "example_id": 123, "sort_order": 123,
      "created_at": "2023-11-07T05:31:56Z",
      "example": {
        "example_id": 123, "user_id": 123, "input_text": "<string>",
        "output_text": "<string>", "is_active": true,
        "created_at": "2023-11-07T05:31:56Z", "updated_at": "2023-11-07T05:31:56Z",
        "title": "<string>", "meta": {}
      }
    }]
  },
  "responses": [{
    "response_id": 123, "session_model_id": 123, "session_id": 123,
    "model_name": "<string>", "prompt_text": "<string>", "response_text": "<string>",
    "created_at": "2023-11-07T05:31:56Z", "token_usage": {}, "latency_ms": 123
  }]
}
""")


def as_json(message: Any) -> dict[str, Any]:
    """The answer as a gateway emitting unpopulated fields writes it: proto field names,
    defaults printed, and null for unset nullable (wrapper) fields."""
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for descriptor in message.DESCRIPTOR.fields:
        message_type = descriptor.message_type
        if (
            message_type
            and descriptor.name not in result
            and message_type.full_name.startswith("google.protobuf.")
        ):
            result[descriptor.name] = None
    return result


@dataclass
class Practice:
    """A project with a practising user, and a catalog made by the organization admin."""

    org: Org
    project_id: int
    user_id: int
    user: AsyncClient
    practice_class: PracticeClass
    agent: PracticeAgent
    knowledge_ids: list[int]
    admin_example_ids: list[int]


async def make_example(client: AsyncClient, text: str) -> int:
    example = await client.examples.CreateFewShotExample(
        practice_pb2.CreateFewShotExampleRequest(
            example=practice_pb2.FewShotExample(
                input_text=f"in {text}",
                output_text=f"out {text}",
                title=wrappers_pb2.StringValue(value=text),
            )
        )
    )
    return example.example_id


@pytest.fixture
async def practice(org: Org) -> Practice:
    project = await org.project()
    user_id, user = await org.member(project.id, Member.ANNOTATOR)
    admin = org.admin
    practice_class = await admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(
                project_id=project.id, name="Support", model_names=["model-a", "model-b"]
            )
        )
    )
    example_ids = [await make_example(admin, t) for t in ("first", "second", "off")]
    await admin.examples.UpdateFewShotExample(
        practice_pb2.UpdateFewShotExampleRequest(
            example_id=example_ids[2],
            example=practice_pb2.FewShotExample(is_active=False),
            update_mask=field_mask_pb2.FieldMask(paths=["is_active"]),
        )
    )
    agent = await admin.catalog.CreatePracticeAgent(
        practice_pb2.CreatePracticeAgentRequest(
            agent=PracticeAgent(
                name="Helper",
                instructions="Be kind.",
                style_preset="friendly",
                style_params=json_format.ParseDict(
                    {"tone": "warm"}, practice_pb2.PracticeAgent().style_params
                ),
                few_shot_example_ids=[example_ids[1], example_ids[2], example_ids[0]],
            )
        )
    )
    knowledge_ids = []
    for title in ("faq", "manual"):
        item = await admin.catalog.CreateKnowledgeItem(
            practice_pb2.CreateKnowledgeItemRequest(
                knowledge_item=practice_pb2.KnowledgeItem(project_id=project.id, title=title)
            )
        )
        knowledge_ids.append(item.knowledge_id)
    return Practice(
        org, project.id, user_id, user, practice_class, agent, knowledge_ids, example_ids
    )


def document_body(p: Practice) -> dict[str, Any]:
    return {
        "class_id": p.practice_class.class_id,
        "project_id": p.project_id,
        "knowledge_ids": [p.knowledge_ids[1], p.knowledge_ids[0]],
        "agent_id": p.agent.agent_id,
        "title": "First chat",
        "notes": "trying things",
    }


async def create(client: AsyncClient, body: dict[str, Any]) -> Session:
    request = json_format.ParseDict(body, practice_pb2.CreatePracticeSessionRequest())
    return await client.practice.CreatePracticeSession(request)


async def models_of(client: AsyncClient, session_id: int) -> list[practice_pb2.SessionModel]:
    answer = await client.practice.ListSessionModels(
        practice_pb2.ListSessionModelsRequest(session_id=session_id)
    )
    return list(answer.models)


async def record(client: AsyncClient, session_id: int, model_id: int, prompt: str) -> Any:
    return await client.practice.RecordResponse(
        practice_pb2.RecordResponseRequest(
            session_id=session_id,
            session_model_id=model_id,
            prompt_text=prompt,
            response_text=f"answer to {prompt}",
            token_usage=json_format.ParseDict(
                {"prompt": 3, "completion": 5}, practice_pb2.PracticeResponse().token_usage
            ),
            latency_ms=250,
        )
    )


async def test_every_practice_rpc_has_a_permission_rule() -> None:
    for name in ("PracticeCatalogService", "FewShotExampleService", "PracticeSessionService"):
        service = practice_pb2.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            assert f"/{service.full_name}/{method.name}" in RULES


async def test_create_with_document_body_answers_the_documented_shape(
    practice: Practice,
) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    assert session.session_id > 0 and session.user_id == p.user_id
    assert session.class_id.value == p.practice_class.class_id
    assert session.project_id.value == p.project_id
    assert list(session.knowledge_ids) == [p.knowledge_ids[1], p.knowledge_ids[0]]
    assert session.agent_id.value == p.agent.agent_id
    assert (session.title.value, session.notes.value) == ("First chat", "trying things")
    assert session.kind == Session.CHAT
    settings = session.settings
    assert settings.session_id == session.session_id and settings.setting_id > 0
    # The agent's preset and parameters, its snapshot, and its active examples in order.
    assert settings.style_preset == "friendly"
    assert json_format.MessageToDict(settings.style_params) == {"tone": "warm"}
    snapshot = json_format.MessageToDict(settings.agent_snapshot)
    assert snapshot["name"] == "Helper" and snapshot["instructions"] == "Be kind."
    assert [link.example_id for link in settings.few_shot_links] == [
        p.admin_example_ids[1],
        p.admin_example_ids[0],
    ]
    assert [link.sort_order for link in settings.few_shot_links] == [0, 1]
    assert settings.few_shot_links[0].example.input_text == "in second"
    models = await models_of(p.user, session.session_id)
    assert [m.model_name for m in models] == ["model-a", "model-b"]

    await record(p.user, session.session_id, models[1].session_model_id, "hello")
    got = await p.user.practice.GetPracticeSession(
        practice_pb2.GetPracticeSessionRequest(session_id=session.session_id)
    )
    answer = as_json(got)
    assert_same_shape(DOCUMENT_ANSWER, answer)
    assert set(answer) - set(DOCUMENT_ANSWER) == {"kind"}
    assert answer["settings"]["few_shot_links"][0]["example"]["title"] == "second"
    assert answer["responses"][0]["model_name"] == "model-b"
    assert answer["responses"][0]["token_usage"] == {"prompt": 3.0, "completion": 5.0}


async def test_create_with_nulls_makes_a_personal_session_with_default_settings(
    practice: Practice,
) -> None:
    body = {key: None for key in document_body(practice)}
    session = await create(practice.user, body)
    answer = as_json(session)
    for key in ("class_id", "project_id", "agent_id", "title", "notes"):
        assert answer[key] is None, key
    assert answer["knowledge_ids"] == [] and answer["responses"] == []
    assert answer["settings"]["style_preset"] == "accurate"
    assert answer["settings"]["agent_snapshot"] == {}
    assert answer["settings"]["few_shot_links"] == []
    assert await models_of(practice.user, session.session_id) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("class_id", 999_999),
        ("knowledge_ids", [999_999]),
        ("agent_id", 999_999),
        ("project_id", 999_999),
    ],
)
async def test_each_missing_reference_is_not_found_naming_it(
    practice: Practice, field: str, value: Any
) -> None:
    body = document_body(practice)
    body[field] = value
    # The organization admin may practise anywhere, so a missing project is NOT_FOUND too.
    with pytest.raises(CorrigoError) as err:
        await create(practice.org.admin, body)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.reason == "RESOURCE_NOT_FOUND"
    assert err.value.error_metadata["field"] == field
    assert "999999" in err.value.message


async def test_catalog_items_of_another_project_are_not_usable(practice: Practice) -> None:
    other = await practice.org.project()
    foreign = await practice.org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(project_id=other.id, name="x", model_names=["m"])
        )
    )
    body = document_body(practice)
    body["class_id"] = foreign.class_id
    with pytest.raises(CorrigoError) as err:
        await create(practice.user, body)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.error_metadata["field"] == "class_id"
    # A personal session may use only organization-wide items.
    with pytest.raises(CorrigoError) as err:
        await create(practice.user, {"class_id": practice.practice_class.class_id})
    assert err.value.error_metadata["field"] == "class_id"


@pytest.mark.parametrize(
    "body",
    [
        {"class_id": 0},
        {"project_id": -1},
        {"knowledge_ids": [1.5]},
        {"knowledge_ids": ["7"]},
        {"knowledge_ids": [3, 3]},
        {"title": "t" * 501},
    ],
)
async def test_create_bad_fields_are_invalid_argument(
    practice: Practice, body: dict[str, Any]
) -> None:
    with pytest.raises(CorrigoError) as err:
        await create(practice.user, body)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == list(body)


async def test_project_session_needs_the_practice_permission(practice: Practice) -> None:
    _, viewer = await practice.org.member(practice.project_id, Member.VIEWER)
    _, outsider = await practice.org.user()
    for client in (viewer, outsider):
        with pytest.raises(CorrigoError) as err:
            await create(client, {"project_id": practice.project_id})
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Without the permission a missing project is denied too, not NOT_FOUND.
    with pytest.raises(CorrigoError) as err:
        await create(outsider, {"project_id": 999_999})
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    # A personal session needs no project role.
    assert (await create(outsider, {"title": "mine"})).title.value == "mine"


async def patch(client: AsyncClient, session_id: int, body: dict[str, Any]) -> Session:
    request = json_format.ParseDict(body, practice_pb2.UpdatePracticeSessionRequest())
    request.session_id = session_id
    return await client.practice.UpdatePracticeSession(request)


@pytest.mark.parametrize("field", ["class_id", "knowledge_ids", "agent_id", "title", "notes"])
async def test_patch_of_each_field_alone_changes_only_it(practice: Practice, field: str) -> None:
    p = practice
    second_class = await p.org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(name="Org-wide", model_names=["model-z"])
        )
    )
    second_agent = await p.org.admin.catalog.CreatePracticeAgent(
        practice_pb2.CreatePracticeAgentRequest(agent=PracticeAgent(name="Other"))
    )
    before = as_json(await create(p.user, document_body(p)))
    new_values = {
        "class_id": second_class.class_id,
        "knowledge_ids": [p.knowledge_ids[0]],
        "agent_id": second_agent.agent_id,
        "title": "renamed",
        "notes": "new notes",
    }
    after = as_json(await patch(p.user, before["session_id"], {field: new_values[field]}))
    assert after[field] == new_values[field]
    assert after["updated_at"] > before["updated_at"]
    for key in ("class_id", "project_id", "knowledge_ids", "agent_id", "title", "notes"):
        if key != field:
            assert after[key] == before[key], key
    assert after["created_at"] == before["created_at"]


async def test_patch_of_project_moves_the_session(practice: Practice) -> None:
    p = practice
    session = await create(p.user, {"title": "personal"})
    moved = await patch(p.user, session.session_id, {"project_id": p.project_id})
    assert moved.project_id.value == p.project_id and moved.title.value == "personal"
    # Moving into a project where the caller cannot practise is denied.
    other = await p.org.project()
    with pytest.raises(CorrigoError) as err:
        await patch(p.user, session.session_id, {"project_id": other.id})
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Moving out while keeping a class of the project: the class is not usable there.
    with_class = await create(p.user, document_body(p))
    with pytest.raises(CorrigoError) as err:
        await patch(
            p.user,
            with_class.session_id,
            {"project_id": None, "update_mask": "projectId"},
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.error_metadata["field"] == "class_id"


async def test_patch_with_null_in_the_mask_clears(practice: Practice) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    answer = as_json(
        await patch(
            p.user,
            session.session_id,
            {
                "title": None,
                "notes": None,
                "agent_id": None,
                "knowledge_ids": None,
                "update_mask": "title,notes,agentId,knowledgeIds",
            },
        )
    )
    assert answer["title"] is None and answer["notes"] is None
    assert answer["agent_id"] is None and answer["knowledge_ids"] == []
    assert answer["settings"]["agent_snapshot"] == {}
    assert answer["class_id"] == p.practice_class.class_id


async def test_patch_null_without_a_mask_leaves_the_field(practice: Practice) -> None:
    session = await create(practice.user, document_body(practice))
    answer = await patch(practice.user, session.session_id, {"title": None, "notes": "n2"})
    assert answer.title.value == "First chat" and answer.notes.value == "n2"


async def test_patch_of_several_fields_at_once(practice: Practice) -> None:
    p = practice
    session = await create(p.user, {"project_id": p.project_id})
    answer = await patch(p.user, session.session_id, document_body(p))
    assert answer.class_id.value == p.practice_class.class_id
    assert list(answer.knowledge_ids) == [p.knowledge_ids[1], p.knowledge_ids[0]]
    assert answer.agent_id.value == p.agent.agent_id
    assert (answer.title.value, answer.notes.value) == ("First chat", "trying things")
    assert json_format.MessageToDict(answer.settings.agent_snapshot)["name"] == "Helper"
    assert len(await models_of(p.user, session.session_id)) == 2


async def test_patch_with_an_explicit_mask_writes_only_the_named_fields(
    practice: Practice,
) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    answer = await patch(
        p.user,
        session.session_id,
        {"title": "only this", "notes": "ignored", "agent_id": None, "update_mask": "title"},
    )
    assert answer.title.value == "only this"
    assert answer.notes.value == "trying things"
    assert answer.agent_id.value == p.agent.agent_id


async def test_patch_bad_input_is_invalid_argument(practice: Practice) -> None:
    session = await create(practice.user, {})
    for session_id, body, field in [
        (0, {"title": "x"}, "session_id"),
        (-3, {"title": "x"}, "session_id"),
        (
            session.session_id,
            {"title": "x", "update_mask": "title,owner"},
            "update_mask.paths[1]",
        ),
        (session.session_id, {"agent_id": 0}, "agent_id"),
    ]:
        with pytest.raises(CorrigoError) as err:
            await patch(practice.user, session_id, body)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert field in err.value.fields


async def test_changing_the_class_recreates_models_and_keeps_responses(
    practice: Practice,
) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    old_models = await models_of(p.user, session.session_id)
    await record(p.user, session.session_id, old_models[0].session_model_id, "q1")
    other = await p.org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(
                project_id=p.project_id, name="Sales", model_names=["model-c"]
            )
        )
    )
    answer = await patch(p.user, session.session_id, {"class_id": other.class_id})
    assert [r.prompt_text for r in answer.responses] == ["q1"]
    models = await models_of(p.user, session.session_id)
    assert [(m.model_name, m.HasField("retired_at")) for m in models] == [
        ("model-c", False),
        ("model-a", True),
        ("model-b", True),
    ]
    with pytest.raises(CorrigoError) as err:
        await record(p.user, session.session_id, old_models[0].session_model_id, "q2")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "SESSION_MODEL_RETIRED"
    await record(p.user, session.session_id, models[0].session_model_id, "q2")
    # Setting the same class again keeps the models.
    await patch(p.user, session.session_id, {"class_id": other.class_id})
    assert [m.session_model_id for m in await models_of(p.user, session.session_id)] == [
        m.session_model_id for m in models
    ]


async def test_settings_update_and_few_shot_ordering(practice: Practice) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    own = [await make_example(p.user, t) for t in ("a", "b", "c")]
    order = [own[2], p.admin_example_ids[0], own[0], own[1]]
    answer = await p.user.practice.UpdatePracticeSettings(
        practice_pb2.UpdatePracticeSettingsRequest(
            session_id=session.session_id,
            style_preset="creative",
            generation_params=json_format.ParseDict(
                {"temperature": 0.7}, practice_pb2.PracticeAgent().generation_params
            ),
            few_shot_example_ids=order,
        )
    )
    settings = answer.settings
    assert settings.style_preset == "creative"
    assert json_format.MessageToDict(settings.generation_params) == {"temperature": 0.7}
    assert json_format.MessageToDict(settings.style_params) == {"tone": "warm"}
    assert [link.example_id for link in settings.few_shot_links] == order
    assert [link.sort_order for link in settings.few_shot_links] == [0, 1, 2, 3]
    assert settings.updated_at.ToDatetime() > session.settings.updated_at.ToDatetime()
    # Reordering keeps the examples; another user's example that is not linked is not found.
    _, stranger = await p.org.user()
    foreign = await make_example(stranger, "theirs")
    with pytest.raises(CorrigoError) as err:
        await p.user.practice.UpdatePracticeSettings(
            practice_pb2.UpdatePracticeSettingsRequest(
                session_id=session.session_id, few_shot_example_ids=[own[0], foreign]
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.error_metadata["field"] == "few_shot_example_ids"
    # The mask names the links with an empty list: every link goes.
    cleared = await p.user.practice.UpdatePracticeSettings(
        practice_pb2.UpdatePracticeSettingsRequest(
            session_id=session.session_id,
            update_mask=field_mask_pb2.FieldMask(paths=["few_shot_example_ids"]),
        )
    )
    assert list(cleared.settings.few_shot_links) == []
    assert cleared.settings.style_preset == "creative"


async def test_responses_and_events_are_recorded_and_paged(practice: Practice) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    models = await models_of(p.user, session.session_id)
    response = await record(p.user, session.session_id, models[0].session_model_id, "hi")
    assert response.session_id == session.session_id
    assert (response.model_name, response.latency_ms) == ("model-a", 250)
    appended = await p.user.practice.AppendEvents(
        practice_pb2.AppendEventsRequest(
            session_id=session.session_id,
            events=[
                PracticeEvent(
                    type=PracticeEvent.RATING, rating=4, response_id=response.response_id
                ),
                PracticeEvent(
                    type=PracticeEvent.CORRECTION,
                    text="a better answer",
                    response_id=response.response_id,
                ),
                PracticeEvent(type=PracticeEvent.NOTE, text="note"),
            ],
        )
    )
    assert [e.type for e in appended.events] == [
        PracticeEvent.RATING,
        PracticeEvent.CORRECTION,
        PracticeEvent.NOTE,
    ]
    seen: list[tuple[int, str]] = []
    token, pages = "", 0
    while True:
        page = await p.user.practice.ListEvents(
            practice_pb2.ListEventsRequest(
                session_id=session.session_id, page_size=2, page_token=token
            )
        )
        seen.extend((e.type, e.text) for e in page.events)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [
        (PracticeEvent.PROMPT, "hi"),
        (PracticeEvent.RESPONSE, "answer to hi"),
        (PracticeEvent.RATING, ""),
        (PracticeEvent.CORRECTION, "a better answer"),
        (PracticeEvent.NOTE, "note"),
    ]
    # A token of one session's log is refused for another session.
    other = await create(p.user, {})
    first = await p.user.practice.ListEvents(
        practice_pb2.ListEventsRequest(session_id=session.session_id, page_size=1)
    )
    with pytest.raises(CorrigoError) as err:
        await p.user.practice.ListEvents(
            practice_pb2.ListEventsRequest(
                session_id=other.session_id, page_size=1, page_token=first.next_page_token
            )
        )
    assert err.value.fields == ["page_token"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (PracticeEvent(), "events[0].type"),
        (PracticeEvent(type=PracticeEvent.RATING, rating=6), "events[0].rating"),
        (PracticeEvent(type=PracticeEvent.NOTE, rating=2), "events[0].rating"),
        (PracticeEvent(type=PracticeEvent.NOTE, response_id=-1), "events[0].response_id"),
    ],
)
async def test_bad_events_are_invalid_argument(
    practice: Practice, event: PracticeEvent, field: str
) -> None:
    session = await create(practice.user, {})
    with pytest.raises(CorrigoError) as err:
        await practice.user.practice.AppendEvents(
            practice_pb2.AppendEventsRequest(session_id=session.session_id, events=[event])
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.fields


async def test_event_about_another_sessions_response_is_not_found(practice: Practice) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    models = await models_of(p.user, session.session_id)
    response = await record(p.user, session.session_id, models[0].session_model_id, "x")
    other = await create(p.user, {})
    with pytest.raises(CorrigoError) as err:
        await p.user.practice.AppendEvents(
            practice_pb2.AppendEventsRequest(
                session_id=other.session_id,
                events=[
                    PracticeEvent(type=PracticeEvent.NOTE),
                    PracticeEvent(
                        type=PracticeEvent.RATING, rating=1, response_id=response.response_id
                    ),
                ],
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.error_metadata["field"] == "events[1].response_id"
    listed = await p.user.practice.ListEvents(
        practice_pb2.ListEventsRequest(session_id=other.session_id)
    )
    assert list(listed.events) == []


async def test_another_users_session_is_invisible(practice: Practice) -> None:
    p = practice
    session = await create(p.user, document_body(p))
    models = await models_of(p.user, session.session_id)
    _, colleague = await p.org.member(p.project_id, Member.ANNOTATOR)
    sid = session.session_id
    calls = [
        colleague.practice.GetPracticeSession(
            practice_pb2.GetPracticeSessionRequest(session_id=sid)
        ),
        patch(colleague, sid, {"title": "mine now"}),
        colleague.practice.DeletePracticeSession(
            practice_pb2.DeletePracticeSessionRequest(session_id=sid)
        ),
        colleague.practice.UpdatePracticeSettings(
            practice_pb2.UpdatePracticeSettingsRequest(session_id=sid, style_preset="x")
        ),
        record(colleague, sid, models[0].session_model_id, "sneaky"),
        colleague.practice.ListEvents(practice_pb2.ListEventsRequest(session_id=sid)),
        colleague.practice.ListSessionModels(practice_pb2.ListSessionModelsRequest(session_id=sid)),
        colleague.practice.AppendEvents(
            practice_pb2.AppendEventsRequest(
                session_id=sid, events=[PracticeEvent(type=PracticeEvent.NOTE)]
            )
        ),
    ]
    for call in calls:
        with pytest.raises(CorrigoError) as err:
            await call
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    listed = await colleague.practice.ListPracticeSessions(
        practice_pb2.ListPracticeSessionsRequest()
    )
    assert list(listed.sessions) == []
    unchanged = await p.user.practice.GetPracticeSession(
        practice_pb2.GetPracticeSessionRequest(session_id=sid)
    )
    assert unchanged.title.value == "First chat" and list(unchanged.responses) == []


async def test_list_own_sessions_newest_first_paged_and_delete(practice: Practice) -> None:
    p = practice
    ids = [(await create(p.user, {"title": f"s{i}"})).session_id for i in range(5)]
    await create(p.user, document_body(p))
    seen: list[int] = []
    token = ""
    while True:
        page = await p.user.practice.ListPracticeSessions(
            practice_pb2.ListPracticeSessionsRequest(page_size=2, page_token=token)
        )
        seen.extend(s.session_id for s in page.sessions)
        assert all(s.settings.setting_id for s in page.sessions)
        token = page.next_page_token
        if not token:
            break
    assert seen[1:] == ids[::-1] and seen[0] > ids[-1]
    # Losing the project role hides the project's sessions.
    await p.org.admin.admin.RemoveMember(
        admin_pb2.RemoveMemberRequest(project_id=p.project_id, user_id=p.user_id)
    )
    page = await p.user.practice.ListPracticeSessions(practice_pb2.ListPracticeSessionsRequest())
    assert [s.session_id for s in page.sessions] == ids[::-1]
    await p.user.practice.DeletePracticeSession(
        practice_pb2.DeletePracticeSessionRequest(session_id=ids[0])
    )
    with pytest.raises(CorrigoError) as err:
        await p.user.practice.GetPracticeSession(
            practice_pb2.GetPracticeSessionRequest(session_id=ids[0])
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_a_failure_midway_through_create_leaves_nothing_behind(practice: Practice) -> None:
    p = practice
    before = await database.count(PracticeSession.select())
    plan = NewSession(
        organization_id=(await p.org.admin.admin.WhoAmI(admin_pb2.WhoAmIRequest())).organization.id,
        user_id=p.user_id,
        kind=Session.CHAT,
        project_id=p.project_id,
        class_id=p.practice_class.class_id,
        agent_id=None,
        title="doomed",
        notes=None,
        knowledge_ids=p.knowledge_ids,
        model_names=["model-a"],
        style_preset="accurate",
        style_params={},
        generation_params={},
        agent_snapshot={},
        # The session, its knowledge links and settings are written before the few-shot
        # links, whose foreign key fails on this id.
        example_ids=[p.admin_example_ids[0], 2_000_000_000],
    )
    # The failed foreign key answers NOT_FOUND naming the missing example.
    with pytest.raises(NotFound) as err:
        await practice_sessions.create_session(plan)
    assert "few-shot example 2000000000 not found" in str(err.value)
    assert await database.count(PracticeSession.select()) == before
    for model in (
        practice_sessions.PracticeSetting,
        practice_sessions.PracticeSessionKnowledge,
        practice_sessions.PracticeSessionModel,
    ):
        assert not await database.exists(
            model.select().join(PracticeSession).where(PracticeSession.title == "doomed")
        )


async def test_catalog_crud_and_who_may_do_it(org: Org) -> None:
    project = await org.project()
    _, project_admin = await org.member(project.id, Member.ADMIN)
    _, annotator = await org.member(project.id, Member.ANNOTATOR)
    _, outsider = await org.user()
    # Organization-wide items: organization admins only.
    org_class = await org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(name="Global", model_names=["g1"])
        )
    )
    with pytest.raises(CorrigoError) as err:
        await project_admin.catalog.CreatePracticeClass(
            practice_pb2.CreatePracticeClassRequest(
                practice_class=PracticeClass(name="Nope", model_names=["n"])
            )
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Project items: the project's admins; annotators read them, outsiders do not.
    project_class = await project_admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(
                project_id=project.id, name="Local", description="d", model_names=["l1", "l2"]
            )
        )
    )
    with pytest.raises(CorrigoError) as err:
        await annotator.catalog.CreatePracticeClass(
            practice_pb2.CreatePracticeClassRequest(
                practice_class=PracticeClass(project_id=project.id, name="x", model_names=["y"])
            )
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    got = await annotator.catalog.GetPracticeClass(
        practice_pb2.GetPracticeClassRequest(class_id=project_class.class_id)
    )
    assert got == project_class
    with pytest.raises(CorrigoError) as err:
        await outsider.catalog.GetPracticeClass(
            practice_pb2.GetPracticeClassRequest(class_id=project_class.class_id)
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert (
        await outsider.catalog.GetPracticeClass(
            practice_pb2.GetPracticeClassRequest(class_id=org_class.class_id)
        )
    ).name == "Global"
    listed = await annotator.catalog.ListPracticeClasses(
        practice_pb2.ListPracticeClassesRequest(project_id=project.id)
    )
    assert [c.name for c in listed.practice_classes] == ["Global", "Local"]
    listed = await annotator.catalog.ListPracticeClasses(practice_pb2.ListPracticeClassesRequest())
    assert [c.name for c in listed.practice_classes] == ["Global"]
    # Update with a mask, then delete.
    updated = await project_admin.catalog.UpdatePracticeClass(
        practice_pb2.UpdatePracticeClassRequest(
            class_id=project_class.class_id,
            practice_class=PracticeClass(name="Renamed", model_names=["ignored"]),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "description"]),
        )
    )
    assert (updated.name, updated.description, list(updated.model_names)) == (
        "Renamed",
        "",
        ["l1", "l2"],
    )
    assert updated.updated_at.ToDatetime() >= updated.created_at.ToDatetime()
    await project_admin.catalog.DeletePracticeClass(
        practice_pb2.DeletePracticeClassRequest(class_id=project_class.class_id)
    )
    with pytest.raises(CorrigoError) as err:
        await annotator.catalog.GetPracticeClass(
            practice_pb2.GetPracticeClassRequest(class_id=project_class.class_id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_agents_and_knowledge_crud(org: Org, other_org: Org) -> None:
    example = await make_example(org.admin, "default")
    agent = await org.admin.catalog.CreatePracticeAgent(
        practice_pb2.CreatePracticeAgentRequest(
            agent=PracticeAgent(name="A", few_shot_example_ids=[example])
        )
    )
    assert agent.style_preset == "accurate" and list(agent.few_shot_example_ids) == [example]
    updated = await org.admin.catalog.UpdatePracticeAgent(
        practice_pb2.UpdatePracticeAgentRequest(
            agent_id=agent.agent_id,
            agent=PracticeAgent(instructions="new"),
            update_mask=field_mask_pb2.FieldMask(paths=["instructions", "few_shot_example_ids"]),
        )
    )
    assert updated.instructions == "new" and list(updated.few_shot_example_ids) == []
    # Another user's example cannot become an agent default.
    _, member = await org.user()
    theirs = await make_example(member, "theirs")
    with pytest.raises(CorrigoError) as err:
        await org.admin.catalog.UpdatePracticeAgent(
            practice_pb2.UpdatePracticeAgentRequest(
                agent_id=agent.agent_id, agent=PracticeAgent(few_shot_example_ids=[theirs])
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    item = await org.admin.catalog.CreateKnowledgeItem(
        practice_pb2.CreateKnowledgeItemRequest(
            knowledge_item=practice_pb2.KnowledgeItem(title="Doc", content="text")
        )
    )
    listed = await member.catalog.ListKnowledgeItems(practice_pb2.ListKnowledgeItemsRequest())
    assert [k.title for k in listed.knowledge_items] == ["Doc"]
    # Other organizations see nothing.
    with pytest.raises(CorrigoError) as err:
        await other_org.admin.catalog.GetKnowledgeItem(
            practice_pb2.GetKnowledgeItemRequest(knowledge_id=item.knowledge_id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    await org.admin.catalog.DeleteKnowledgeItem(
        practice_pb2.DeleteKnowledgeItemRequest(knowledge_id=item.knowledge_id)
    )
    await org.admin.catalog.DeletePracticeAgent(
        practice_pb2.DeletePracticeAgentRequest(agent_id=agent.agent_id)
    )
    listed = await member.catalog.ListPracticeAgents(practice_pb2.ListPracticeAgentsRequest())
    assert list(listed.agents) == []


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        (
            "CreatePracticeClass",
            practice_pb2.CreatePracticeClassRequest(practice_class=PracticeClass(name="x")),
            "practice_class.model_names",
        ),
        (
            "CreatePracticeClass",
            practice_pb2.CreatePracticeClassRequest(
                practice_class=PracticeClass(model_names=["m"])
            ),
            "practice_class.name",
        ),
        (
            "CreatePracticeClass",
            practice_pb2.CreatePracticeClassRequest(
                practice_class=PracticeClass(name="x", model_names=["m", "m"])
            ),
            "practice_class.model_names",
        ),
        (
            "CreatePracticeAgent",
            practice_pb2.CreatePracticeAgentRequest(
                agent=PracticeAgent(name="x", style_preset="Not A Preset")
            ),
            "agent.style_preset",
        ),
        ("GetPracticeAgent", practice_pb2.GetPracticeAgentRequest(agent_id=0), "agent_id"),
        (
            "ListKnowledgeItems",
            practice_pb2.ListKnowledgeItemsRequest(project_id=-1),
            "project_id",
        ),
    ],
)
async def test_catalog_bad_input_is_invalid_argument(
    org: Org, method: str, request_: Any, field: str
) -> None:
    with pytest.raises(CorrigoError) as err:
        await getattr(org.admin.catalog, method)(request_)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.fields


async def test_an_update_of_an_item_checks_its_fields_once_the_item_is_found(org: Org) -> None:
    """The item (and the permission where it lives) first: NOT_FOUND for one that is not
    there, before the rest of the request is read."""
    made = await org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(name="x", model_names=["m"])
        )
    )
    bad_mask = field_mask_pb2.FieldMask(paths=["project_id"])
    with pytest.raises(CorrigoError) as err:
        await org.admin.catalog.UpdatePracticeClass(
            practice_pb2.UpdatePracticeClassRequest(class_id=made.class_id, update_mask=bad_mask)
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["update_mask.paths[0]"]
    with pytest.raises(CorrigoError) as err:
        await org.admin.catalog.UpdatePracticeClass(
            practice_pb2.UpdatePracticeClassRequest(
                class_id=made.class_id + 10_000, update_mask=bad_mask
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_examples_are_private_to_their_owner(org: Org) -> None:
    _, alice = await org.user()
    _, bob = await org.user()
    first = await make_example(alice, "one")
    await make_example(alice, "two")
    listed = await alice.examples.ListFewShotExamples(
        practice_pb2.ListFewShotExamplesRequest(page_size=1)
    )
    assert [e.example_id for e in listed.examples] == [first] and listed.next_page_token
    assert (
        list(
            (
                await bob.examples.ListFewShotExamples(practice_pb2.ListFewShotExamplesRequest())
            ).examples
        )
        == []
    )
    for call in [
        bob.examples.GetFewShotExample(practice_pb2.GetFewShotExampleRequest(example_id=first)),
        bob.examples.DeleteFewShotExample(
            practice_pb2.DeleteFewShotExampleRequest(example_id=first)
        ),
    ]:
        with pytest.raises(CorrigoError) as err:
            await call
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    updated = await alice.examples.UpdateFewShotExample(
        practice_pb2.UpdateFewShotExampleRequest(
            example_id=first,
            example=practice_pb2.FewShotExample(output_text="better"),
            update_mask=field_mask_pb2.FieldMask(paths=["output_text", "title"]),
        )
    )
    assert updated.output_text == "better" and not updated.HasField("title")
    assert updated.is_active and updated.input_text == "in one"
    with pytest.raises(CorrigoError) as err:
        await alice.examples.CreateFewShotExample(
            practice_pb2.CreateFewShotExampleRequest(
                example=practice_pb2.FewShotExample(input_text="only input")
            )
        )
    assert err.value.fields == ["example.output_text"]
    await alice.examples.DeleteFewShotExample(
        practice_pb2.DeleteFewShotExampleRequest(example_id=first)
    )
