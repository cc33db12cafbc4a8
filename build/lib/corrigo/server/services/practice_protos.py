"""Conversions between practice store rows and their protos, shared by the practice and
improvement services, and checks of the free-form values they carry."""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import json_format, struct_pb2, wrappers_pb2

from corrigo.server.store import few_shot, practice_catalog, practice_sessions
from corrigo.server.timestamps import to_proto
from corrigo.server.validation import Violations
from corrigo.v1 import practice_pb2

DEFAULT_STYLE_PRESET = "accurate"
STYLE_PRESET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A free-form object is settings, not a document store: keep each one small.
MAX_OBJECT_BYTES = 100_000


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if value:
        message.update(value)
    return message


def plain(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a JSON-ready dict."""
    result: dict[str, Any] = json_format.MessageToDict(value)
    return result


def check_object(checks: Violations, field: str, value: struct_pb2.Struct) -> dict[str, Any]:
    data = plain(value)
    size = len(json.dumps(data, separators=(",", ":")))
    checks.check(size <= MAX_OBJECT_BYTES, field, f"at most {MAX_OBJECT_BYTES} bytes of JSON")
    return data


def check_style_preset(checks: Violations, field: str, value: str) -> None:
    checks.check(
        bool(STYLE_PRESET_PATTERN.match(value)),
        field,
        "1..64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
    )


def check_ids(checks: Violations, field: str, values: list[int], maximum: int) -> list[int]:
    """Distinct ids >= 1, at most `maximum`, in the order given."""
    if len(values) > maximum:
        checks.add(field, f"at most {maximum} ids, got {len(values)}")
    bad = [v for v in values if v < 1]
    if bad:
        checks.add(field, f"ids must be >= 1, got {bad[0]}")
    if len(set(values)) != len(values):
        checks.add(field, "ids must not repeat")
    return values


def int_value(value: int | None) -> wrappers_pb2.Int32Value | None:
    return None if value is None else wrappers_pb2.Int32Value(value=value)


def string_value(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def class_proto(row: practice_catalog.PracticeClass) -> practice_pb2.PracticeClass:
    return practice_pb2.PracticeClass(
        class_id=row.id,
        project_id=row.project_id or 0,
        name=row.name,
        description=row.description,
        model_names=row.model_names,
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
    )


def agent_proto(
    row: practice_catalog.PracticeAgent, example_ids: list[int]
) -> practice_pb2.PracticeAgent:
    return practice_pb2.PracticeAgent(
        agent_id=row.id,
        project_id=row.project_id or 0,
        name=row.name,
        instructions=row.instructions,
        style_preset=row.style_preset,
        style_params=struct(row.style_params),
        generation_params=struct(row.generation_params),
        few_shot_example_ids=example_ids,
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
    )


def agent_snapshot(row: practice_catalog.PracticeAgent, example_ids: list[int]) -> dict[str, Any]:
    """The agent as it is now, as a session keeps it."""
    return {
        "agent_id": row.id,
        "name": row.name,
        "instructions": row.instructions,
        "style_preset": row.style_preset,
        "style_params": row.style_params,
        "generation_params": row.generation_params,
        "few_shot_example_ids": example_ids,
        "updated_at": row.updated_at.isoformat() + "Z",
    }


def knowledge_proto(row: practice_catalog.KnowledgeItem) -> practice_pb2.KnowledgeItem:
    return practice_pb2.KnowledgeItem(
        knowledge_id=row.id,
        project_id=row.project_id or 0,
        title=row.title,
        content=row.content,
        meta=struct(row.meta),
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
    )


def example_proto(row: few_shot.FewShotExample) -> practice_pb2.FewShotExample:
    return practice_pb2.FewShotExample(
        example_id=row.id,
        user_id=row.user_id,
        input_text=row.input_text,
        output_text=row.output_text,
        is_active=row.is_active,
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
        title=string_value(row.title),
        meta=struct(row.meta),
    )


def response_proto(row: practice_sessions.PracticeResponse) -> practice_pb2.PracticeResponse:
    return practice_pb2.PracticeResponse(
        response_id=row.id,
        session_model_id=row.session_model_id,
        session_id=row.session_id,
        model_name=row.model_name,
        prompt_text=row.prompt_text,
        response_text=row.response_text,
        created_at=to_proto(row.created_at),
        token_usage=struct(row.token_usage),
        latency_ms=row.latency_ms,
    )


def session_proto(bundle: practice_sessions.SessionBundle) -> practice_pb2.PracticeSession:
    session, setting = bundle.session, bundle.setting
    return practice_pb2.PracticeSession(
        session_id=session.id,
        user_id=session.user_id,
        created_at=to_proto(session.created_at),
        updated_at=to_proto(session.updated_at),
        class_id=int_value(session.practice_class_id),
        project_id=int_value(session.project_id),
        knowledge_ids=bundle.knowledge_ids,
        agent_id=int_value(session.agent_id),
        title=string_value(session.title),
        notes=string_value(session.notes),
        settings=practice_pb2.PracticeSessionSetting(
            setting_id=setting.id,
            session_id=session.id,
            created_at=to_proto(setting.created_at),
            updated_at=to_proto(setting.updated_at),
            style_preset=setting.style_preset,
            style_params=struct(setting.style_params),
            generation_params=struct(setting.generation_params),
            agent_snapshot=struct(setting.agent_snapshot),
            few_shot_links=[
                practice_pb2.FewShotLink(
                    id=link.id,
                    setting_id=setting.id,
                    example_id=example.id,
                    sort_order=link.sort_order,
                    created_at=to_proto(link.created_at),
                    example=example_proto(example),
                )
                for link, example in bundle.links
            ],
        ),
        responses=[response_proto(r) for r in bundle.responses],
        kind=practice_pb2.PracticeSession.Kind.ValueType(session.kind),
    )


def session_model_proto(
    row: practice_sessions.PracticeSessionModel,
) -> practice_pb2.SessionModel:
    return practice_pb2.SessionModel(
        session_model_id=row.id,
        session_id=row.session_id,
        model_name=row.model_name,
        sort_order=row.sort_order,
        created_at=to_proto(row.created_at),
        retired_at=to_proto(row.retired_at),
    )


def event_proto(row: practice_sessions.PracticeEvent) -> practice_pb2.PracticeEvent:
    return practice_pb2.PracticeEvent(
        event_id=row.id,
        session_id=row.session_id,
        type=practice_pb2.PracticeEvent.Type.ValueType(row.type),
        text=row.text,
        rating=row.rating,
        response_id=row.response_id or 0,
        data=struct(row.data),
        created_at=to_proto(row.created_at),
    )
