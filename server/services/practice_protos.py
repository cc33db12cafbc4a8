"""Conversions between practice store rows and their protos, shared by the practice and
improvement services, and checks of the free-form values they carry."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2, wrappers_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import Violations
from corrigo.server.store import few_shot, practice_catalog, practice_sessions
from corrigo.v1 import practice_pb2

DEFAULT_STYLE_PRESET = "accurate"
STYLE_PRESET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A free-form object is settings, not a document store: keep each one small.
MAX_OBJECT_BYTES = 100_000
M = TypeVar("M", bound=Message)


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
    try:
        data = plain(value)
    except (json_format.Error, ValueError):
        checks.add(field, "must be a JSON object whose numbers are finite (no NaN or Infinity)")
        return {}
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


_MISSING = object()
# Message fields converted from a row's value; other message fields are given explicitly.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "google.protobuf.Timestamp": to_proto,
    "google.protobuf.Struct": struct,
    "google.protobuf.StringValue": string_value,
    "google.protobuf.Int32Value": int_value,
}


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """The fields `from_row` may fill from a row, each with its converter (None: as is)."""
    plan: list[tuple[str, Callable[[Any], Any] | None]] = []
    for field in descriptor.fields:
        if field.message_type is None:
            plan.append((field.name, None))
        elif field.message_type.full_name in _CONVERTERS and not field.is_repeated:
            plan.append((field.name, _CONVERTERS[field.message_type.full_name]))
    return tuple(plan)


def from_row(message_type: type[M], row: Any, **given: Any) -> M:
    """A message whose fields are `given`, and the others the row's attribute of the same
    name: timestamps, structs and wrappers converted, a scalar left unset where None."""
    values = given
    for name, convert in _plan(message_type.DESCRIPTOR):
        if name in given:
            continue
        value = getattr(row, name, _MISSING)
        if value is _MISSING:
            continue
        if convert is not None:
            values[name] = convert(value)
        elif value is not None:
            values[name] = value
    return message_type(**values)


def class_proto(row: practice_catalog.PracticeClass) -> practice_pb2.PracticeClass:
    return from_row(practice_pb2.PracticeClass, row, class_id=row.id)


def agent_proto(
    row: practice_catalog.PracticeAgent, example_ids: list[int]
) -> practice_pb2.PracticeAgent:
    return from_row(
        practice_pb2.PracticeAgent, row, agent_id=row.id, few_shot_example_ids=example_ids
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
    return from_row(practice_pb2.KnowledgeItem, row, knowledge_id=row.id)


def example_proto(row: few_shot.FewShotExample) -> practice_pb2.FewShotExample:
    return from_row(practice_pb2.FewShotExample, row, example_id=row.id)


def response_proto(row: practice_sessions.PracticeResponse) -> practice_pb2.PracticeResponse:
    return from_row(practice_pb2.PracticeResponse, row, response_id=row.id)


def session_proto(bundle: practice_sessions.SessionBundle) -> practice_pb2.PracticeSession:
    session, setting = bundle.session, bundle.setting
    links = [
        from_row(
            practice_pb2.FewShotLink,
            link,
            setting_id=setting.id,
            example_id=example.id,
            example=example_proto(example),
        )
        for link, example in bundle.links
    ]
    return from_row(
        practice_pb2.PracticeSession,
        session,
        session_id=session.id,
        class_id=int_value(session.practice_class_id),
        knowledge_ids=bundle.knowledge_ids,
        settings=from_row(
            practice_pb2.PracticeSessionSetting,
            setting,
            setting_id=setting.id,
            session_id=session.id,
            few_shot_links=links,
        ),
        responses=[response_proto(r) for r in bundle.responses],
    )


def session_model_proto(
    row: practice_sessions.PracticeSessionModel,
) -> practice_pb2.SessionModel:
    return from_row(practice_pb2.SessionModel, row, session_model_id=row.id)


def event_proto(row: practice_sessions.PracticeEvent) -> practice_pb2.PracticeEvent:
    return from_row(practice_pb2.PracticeEvent, row, event_id=row.id)
