"""PracticeSessionService: a user's practice sessions, their settings, models, responses
and event log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2
from google.protobuf.message import Message

from corrigo.server.api import auth, pagination
from corrigo.server.api.errors import FailedPrecondition
from corrigo.server.api.fieldmask import fields_to_write
from corrigo.server.api.permissions import PROJECT_ROLE_PERMISSIONS, Permission
from corrigo.server.api.validation import MAX_ID, Violations
from corrigo.server.services import practice_protos as protos
from corrigo.server.services.practice_access import authorize_scope, not_found, own_session
from corrigo.server.store import few_shot, practice_catalog, practice_sessions, projects
from corrigo.server.store.practice_catalog import KnowledgeItem, PracticeAgent, PracticeClass
from corrigo.server.store.practice_sessions import NewEvent, NewSession, PracticeSession
from corrigo.v1 import errors_pb2, practice_pb2, practice_pb2_grpc

_SESSION_FIELDS = ("class_id", "project_id", "knowledge_ids", "agent_id", "title", "notes")
_SETTINGS_FIELDS = ("style_preset", "style_params", "generation_params", "few_shot_example_ids")
_MAX_KNOWLEDGE = 100
_MAX_LINKS = 50
_MAX_TITLE = 500
_MAX_NOTES = 10_000
_MAX_TEXT = 1_000_000
_MAX_EVENTS = 100
_KINDS = {
    v.number: v.name
    for v in practice_pb2.PracticeSession.DESCRIPTOR.enum_types_by_name["Kind"].values
    if v.number
}
_EVENT_TYPES = {
    v.number: v.name
    for v in practice_pb2.PracticeEvent.DESCRIPTOR.enum_types_by_name["Type"].values
    if v.number
}
# Project roles that carry `practice`: the projects whose sessions a member may list.
_PRACTICE_ROLES = frozenset(
    role for role, granted in PROJECT_ROLE_PERMISSIONS.items() if Permission.PRACTICE in granted
)


def _optional_id(checks: Violations, request: Message, name: str) -> int | None:
    if not request.HasField(name):
        return None
    value: int = getattr(request, name).value
    checks.stored_id(name, value)
    return value


def _optional_text(checks: Violations, request: Message, name: str, maximum: int) -> str | None:
    if not request.HasField(name):
        return None
    value: str = getattr(request, name).value
    checks.text(name, value, maximum)
    return value


def _knowledge_ids(checks: Violations, request: Message) -> list[int]:
    """The JSON array of ids as integers; the list is empty when unset."""
    if not request.HasField("knowledge_ids"):
        return []
    values: struct_pb2.ListValue = request.knowledge_ids  # type: ignore[attr-defined]
    ids = []
    for value in values.values:
        number = value.number_value
        if value.WhichOneof("kind") != "number_value" or not number.is_integer():
            checks.add("knowledge_ids", "must be a list of integer ids")
            return []
        if not 1 <= number <= MAX_ID:
            checks.add("knowledge_ids", f"ids must be >= 1, got {number:.0f}")
            return []
        ids.append(int(number))
    return protos.check_ids(checks, "knowledge_ids", ids, _MAX_KNOWLEDGE)


@dataclass(frozen=True)
class _SessionFields:
    """A session's own fields as a create or update request gives them (None: not given)."""

    class_id: int | None
    project_id: int | None
    knowledge_ids: list[int]
    agent_id: int | None
    title: str | None
    notes: str | None


def _session_fields(checks: Violations, request: Message) -> _SessionFields:
    return _SessionFields(
        class_id=_optional_id(checks, request, "class_id"),
        project_id=_optional_id(checks, request, "project_id"),
        knowledge_ids=_knowledge_ids(checks, request),
        agent_id=_optional_id(checks, request, "agent_id"),
        title=_optional_text(checks, request, "title", _MAX_TITLE),
        notes=_optional_text(checks, request, "notes", _MAX_NOTES),
    )


@dataclass
class _References:
    """The catalog rows a session refers to, each usable in the session's scope."""

    practice_class: PracticeClass | None = None
    agent: PracticeAgent | None = None
    agent_example_ids: list[int] = field(default_factory=list)
    knowledge_ids: list[int] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        if self.agent is None:
            return {}
        return protos.agent_snapshot(self.agent, self.agent_example_ids)


async def _resolve(
    project_id: int | None,
    class_id: int | None,
    knowledge_ids: Sequence[int],
    agent_id: int | None,
) -> _References:
    """Load the referenced catalog items; NOT_FOUND naming the first that does not exist
    or belongs to another project than the session's."""
    org_id = auth.current().principal.organization_id

    def usable(row: Any) -> bool:
        return row is not None and row.project_id in (None, project_id)

    found = _References(knowledge_ids=list(knowledge_ids))
    if class_id is not None:
        row = await practice_catalog.get(PracticeClass, org_id, class_id)
        if not usable(row):
            raise not_found("class", "class_id", class_id)
        found.practice_class = row
    items = await practice_catalog.get_many(KnowledgeItem, org_id, knowledge_ids)
    for knowledge_id in knowledge_ids:
        if not usable(items.get(knowledge_id)):
            raise not_found("knowledge item", "knowledge_ids", knowledge_id)
    if agent_id is not None:
        agent = await practice_catalog.get(PracticeAgent, org_id, agent_id)
        if not usable(agent):
            raise not_found("agent", "agent_id", agent_id)
        found.agent = agent
        examples = await practice_catalog.agent_example_ids([agent_id], active_only=True)
        found.agent_example_ids = examples.get(agent_id, [])
    return found


async def _answer(session_id: int) -> practice_pb2.PracticeSession:
    rows = await practice_sessions.get_many([session_id])
    bundles = await practice_sessions.load(rows, responses=True)
    if not bundles:
        # Deleted by a concurrent call once this one had written.
        raise not_found("practice session", "session_id", session_id)
    return protos.session_proto(bundles[0])


class PracticeSessionService(practice_pb2_grpc.PracticeSessionServiceServicer):
    async def CreatePracticeSession(
        self,
        request: practice_pb2.CreatePracticeSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> practice_pb2.PracticeSession:
        checks = Violations()
        given = _session_fields(checks, request)
        kind = request.kind or practice_pb2.PracticeSession.CHAT
        checks.enum("kind", kind, _KINDS)
        checks.raise_if_any()
        refs = await _resolve(given.project_id, given.class_id, given.knowledge_ids, given.agent_id)
        agent = refs.agent
        principal = auth.current().principal
        session_id = await practice_sessions.create_session(
            NewSession(
                organization_id=principal.organization_id,
                user_id=principal.user_id,
                kind=kind,
                project_id=given.project_id,
                class_id=given.class_id,
                agent_id=given.agent_id,
                title=given.title,
                notes=given.notes,
                knowledge_ids=given.knowledge_ids,
                model_names=refs.practice_class.model_names if refs.practice_class else [],
                style_preset=(agent.style_preset if agent else protos.DEFAULT_STYLE_PRESET),
                style_params=agent.style_params if agent else {},
                generation_params=agent.generation_params if agent else {},
                agent_snapshot=refs.snapshot(),
                example_ids=refs.agent_example_ids,
            )
        )
        return await _answer(session_id)

    async def GetPracticeSession(
        self, request: practice_pb2.GetPracticeSessionRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeSession:
        session = own_session()
        return await _answer(session.id)

    async def ListPracticeSessions(
        self,
        request: practice_pb2.ListPracticeSessionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> practice_pb2.ListPracticeSessionsResponse:
        checks = Violations()
        call = auth.current()
        page = pagination.page(request, checks, default=20, maximum=100)
        checks.raise_if_any()
        project_ids = None
        if not call.is_org_admin:
            memberships = await projects.memberships_of(call.principal.user_id)
            project_ids = [p for p, role in memberships if role in _PRACTICE_ROLES]
        # Newest first: the token's position is the last id served, and the next page
        # continues below it.
        rows = await practice_sessions.list_owned(
            call.principal.organization_id,
            call.principal.user_id,
            page.after(),
            page.fetch,
            project_ids,
        )
        rows, token = page.finish(rows, lambda r: r.id)
        bundles = await practice_sessions.load(rows, responses=False)
        return practice_pb2.ListPracticeSessionsResponse(
            sessions=[protos.session_proto(b) for b in bundles], next_page_token=token
        )

    async def UpdatePracticeSession(
        self,
        request: practice_pb2.UpdatePracticeSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> practice_pb2.PracticeSession:
        checks = Violations()
        fields = fields_to_write(request.update_mask, request, _SESSION_FIELDS, checks)
        given = _session_fields(checks, request)
        checks.raise_if_any()
        session = own_session()
        current = await practice_sessions.load([session], responses=False)
        if not current:
            raise not_found("practice session", "session_id", session.id)
        old_knowledge = current[0].knowledge_ids

        new_project = given.project_id if "project_id" in fields else session.project_id
        new_class = given.class_id if "class_id" in fields else session.practice_class_id
        new_agent = given.agent_id if "agent_id" in fields else session.agent_id
        new_knowledge = given.knowledge_ids if "knowledge_ids" in fields else old_knowledge
        moved = new_project != session.project_id
        if moved:
            await authorize_scope(new_project, organization_checked=False)
        # Check what this update names, and everything kept when the scope moves.
        refs = await _resolve(
            new_project,
            new_class if moved or "class_id" in fields else None,
            new_knowledge if moved or "knowledge_ids" in fields else [],
            new_agent if moved or "agent_id" in fields else None,
        )
        values: dict[str, Any] = {}
        if "project_id" in fields:
            values["project"] = new_project
        if "class_id" in fields:
            values["practice_class"] = new_class
        if "agent_id" in fields:
            values["agent"] = new_agent
        if "title" in fields:
            values["title"] = given.title
        if "notes" in fields:
            values["notes"] = given.notes
        class_changed = new_class != session.practice_class_id
        agent_changed = new_agent != session.agent_id
        await practice_sessions.update_session(
            session,
            values,
            knowledge_ids=new_knowledge if "knowledge_ids" in fields else None,
            model_names=(
                (refs.practice_class.model_names if refs.practice_class else [])
                if class_changed
                else None
            ),
            agent_snapshot=refs.snapshot() if agent_changed else None,
        )
        return await _answer(session.id)

    async def DeletePracticeSession(
        self,
        request: practice_pb2.DeletePracticeSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> empty_pb2.Empty:
        session = own_session()
        await practice_sessions.delete_session(session.id)
        return empty_pb2.Empty()

    async def UpdatePracticeSettings(
        self,
        request: practice_pb2.UpdatePracticeSettingsRequest,
        context: grpc.aio.ServicerContext,
    ) -> practice_pb2.PracticeSession:
        checks = Violations()
        fields = fields_to_write(request.update_mask, request, _SETTINGS_FIELDS, checks)
        values: dict[str, Any] = {}
        if "style_preset" in fields:
            preset = request.style_preset or protos.DEFAULT_STYLE_PRESET
            protos.check_style_preset(checks, "style_preset", preset)
            values["style_preset"] = preset
        for name in ("style_params", "generation_params"):
            if name in fields:
                values[name] = protos.check_object(checks, name, getattr(request, name))
        example_ids = None
        if "few_shot_example_ids" in fields:
            example_ids = protos.check_ids(
                checks, "few_shot_example_ids", list(request.few_shot_example_ids), _MAX_LINKS
            )
        checks.raise_if_any()
        session = own_session()
        if example_ids:
            visible = await practice_sessions.linked_example_ids(session.id)
            visible |= await few_shot.owned_ids(auth.current().principal.user_id, example_ids)
            for example_id in example_ids:
                if example_id not in visible:
                    raise not_found("few-shot example", "few_shot_example_ids", example_id)
        await practice_sessions.update_settings(session.id, values, example_ids)
        return await _answer(session.id)

    async def ListSessionModels(
        self, request: practice_pb2.ListSessionModelsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListSessionModelsResponse:
        session = own_session()
        rows = await practice_sessions.session_models(session.id)
        return practice_pb2.ListSessionModelsResponse(
            models=[protos.session_model_proto(r) for r in rows]
        )

    async def RecordResponse(
        self, request: practice_pb2.RecordResponseRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeResponse:
        checks = Violations()
        checks.id("session_model_id", request.session_model_id)
        checks.text("prompt_text", request.prompt_text, _MAX_TEXT, required=True)
        checks.text("response_text", request.response_text, _MAX_TEXT)
        checks.check(request.latency_ms >= 0, "latency_ms", "must be >= 0")
        usage = protos.check_object(checks, "token_usage", request.token_usage)
        checks.raise_if_any()
        session = own_session()
        model = await practice_sessions.get_session_model(session.id, request.session_model_id)
        if model is None:
            raise not_found("session model", "session_model_id", request.session_model_id)
        if model.retired_at is not None:
            raise FailedPrecondition(
                f"session model {model.id} was retired when the session's class changed",
                reason=errors_pb2.SESSION_MODEL_RETIRED,
            )
        row = await practice_sessions.record_response(
            session.id,
            model,
            request.prompt_text,
            request.response_text,
            usage,
            request.latency_ms,
        )
        return protos.response_proto(row)

    async def AppendEvents(
        self, request: practice_pb2.AppendEventsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.AppendEventsResponse:
        checks = Violations()
        checks.check(1 <= len(request.events) <= _MAX_EVENTS, "events", f"1..{_MAX_EVENTS} events")
        events = [_new_event(checks, f"events[{i}]", e) for i, e in enumerate(request.events)]
        checks.raise_if_any()
        session = own_session()
        await _check_responses(session, events)
        rows = await practice_sessions.append_events(session.id, events)
        return practice_pb2.AppendEventsResponse(events=[protos.event_proto(r) for r in rows])

    async def ListEvents(
        self, request: practice_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListEventsResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=100, maximum=1000)
        checks.raise_if_any()
        session = own_session()
        rows = await practice_sessions.list_events(session.id, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r.id)
        return practice_pb2.ListEventsResponse(
            events=[protos.event_proto(r) for r in rows], next_page_token=token
        )


def _new_event(checks: Violations, prefix: str, event: practice_pb2.PracticeEvent) -> NewEvent:
    checks.enum(f"{prefix}.type", event.type, _EVENT_TYPES)
    checks.text(f"{prefix}.text", event.text, _MAX_TEXT)
    if event.type == practice_pb2.PracticeEvent.RATING:
        checks.check(1 <= event.rating <= 5, f"{prefix}.rating", "a RATING needs 1..5")
    else:
        checks.check(event.rating == 0, f"{prefix}.rating", "only a RATING has a rating")
    checks.check(event.response_id >= 0, f"{prefix}.response_id", "must be >= 0")
    return NewEvent(
        type=event.type,
        text=event.text,
        rating=event.rating,
        response_id=event.response_id or None,
        data=protos.check_object(checks, f"{prefix}.data", event.data),
    )


async def _check_responses(session: PracticeSession, events: Sequence[NewEvent]) -> None:
    named = {e.response_id for e in events if e.response_id is not None}
    known = await practice_sessions.response_ids(session.id, named)
    for index, event in enumerate(events):
        if event.response_id is not None and event.response_id not in known:
            raise not_found("response", f"events[{index}].response_id", event.response_id)
