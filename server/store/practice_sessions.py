"""Practice sessions: the session, its knowledge links, settings with few-shot links,
session models, recorded responses and the append-only event log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from corrigo.server.api.errors import FailedPrecondition
from corrigo.server.store.database import BaseModel, atomic, database, utcnow
from corrigo.server.store.few_shot import FewShotExample
from corrigo.server.store.fields import JSONField
from corrigo.server.store.identity import Organization, User
from corrigo.server.store.integrity import Referenced, Refers
from corrigo.server.store.practice_catalog import KnowledgeItem, PracticeAgent, PracticeClass
from corrigo.server.store.projects import Project
from corrigo.v1 import errors_pb2
from corrigo.v1.practice_pb2 import PracticeEvent as EventProto


class PracticeSession(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    project = peewee.ForeignKeyField(Project, null=True)
    practice_class = peewee.ForeignKeyField(PracticeClass, null=True, on_delete="SET NULL")
    agent = peewee.ForeignKeyField(PracticeAgent, null=True, on_delete="SET NULL")
    kind = peewee.IntegerField()
    title = peewee.CharField(max_length=500, null=True)
    notes = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class PracticeSessionKnowledge(BaseModel):
    id = peewee.AutoField()
    session = peewee.ForeignKeyField(PracticeSession, on_delete="CASCADE")
    knowledge = peewee.ForeignKeyField(KnowledgeItem, on_delete="CASCADE")
    sort_order = peewee.IntegerField()


class PracticeSetting(BaseModel):
    id = peewee.AutoField()
    session = peewee.ForeignKeyField(PracticeSession, unique=True, on_delete="CASCADE")
    style_preset = peewee.CharField(max_length=64)
    style_params = JSONField(default=dict)
    generation_params = JSONField(default=dict)
    agent_snapshot = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class PracticeFewShotLink(BaseModel):
    id = peewee.AutoField()
    setting = peewee.ForeignKeyField(PracticeSetting, on_delete="CASCADE")
    example = peewee.ForeignKeyField(FewShotExample, on_delete="CASCADE")
    sort_order = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)


class PracticeSessionModel(BaseModel):
    id = peewee.AutoField()
    session = peewee.ForeignKeyField(PracticeSession, on_delete="CASCADE")
    model_name = peewee.CharField(max_length=200)
    sort_order = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)
    retired_at = peewee.DateTimeField(null=True)


class PracticeResponse(BaseModel):
    id = peewee.AutoField()
    session = peewee.ForeignKeyField(PracticeSession, on_delete="CASCADE")
    session_model = peewee.ForeignKeyField(PracticeSessionModel, on_delete="CASCADE")
    model_name = peewee.CharField(max_length=200)
    prompt_text = peewee.TextField()
    response_text = peewee.TextField()
    token_usage = JSONField(default=dict)
    latency_ms = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)


class PracticeEvent(BaseModel):
    id = peewee.AutoField()
    session = peewee.ForeignKeyField(PracticeSession, on_delete="CASCADE")
    type = peewee.IntegerField()
    text = peewee.TextField(default="")
    rating = peewee.IntegerField(default=0)
    response = peewee.ForeignKeyField(PracticeResponse, null=True, on_delete="CASCADE")
    data = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)


@dataclass
class NewSession:
    """Everything creating a session writes; the service has validated every reference."""

    organization_id: int
    user_id: int
    kind: int
    project_id: int | None
    class_id: int | None
    agent_id: int | None
    title: str | None
    notes: str | None
    knowledge_ids: Sequence[int]
    model_names: Sequence[str]
    style_preset: str
    style_params: dict[str, Any]
    generation_params: dict[str, Any]
    agent_snapshot: dict[str, Any]
    example_ids: Sequence[int]


@dataclass
class SessionBundle:
    """A session with the rows its answer shows."""

    session: PracticeSession
    knowledge_ids: list[int]
    setting: PracticeSetting
    links: list[tuple[PracticeFewShotLink, FewShotExample]]
    responses: list[PracticeResponse] = field(default_factory=list)


@dataclass
class NewEvent:
    type: int
    text: str
    rating: int
    response_id: int | None
    data: dict[str, Any]


async def create_session(plan: NewSession) -> int:
    """Create the session, its knowledge links, settings, few-shot links and one session
    model per class model in one transaction; answers the session id."""
    now = utcnow()
    async with atomic(
        Refers("project_id", "project", Project, _present(plan.project_id)),
        Refers("class_id", "practice class", PracticeClass, _present(plan.class_id)),
        Refers("agent_id", "practice agent", PracticeAgent, _present(plan.agent_id)),
        Refers("knowledge_ids", "knowledge item", KnowledgeItem, plan.knowledge_ids),
        Refers("agent_id", "few-shot example", FewShotExample, plan.example_ids),
    ):
        session = await PracticeSession.acreate(
            organization=plan.organization_id,
            user=plan.user_id,
            project=plan.project_id,
            practice_class=plan.class_id,
            agent=plan.agent_id,
            kind=plan.kind,
            title=plan.title,
            notes=plan.notes,
            created_at=now,
            updated_at=now,
        )
        await _link_knowledge(session.id, plan.knowledge_ids)
        setting = await PracticeSetting.acreate(
            session=session.id,
            style_preset=plan.style_preset,
            style_params=plan.style_params,
            generation_params=plan.generation_params,
            agent_snapshot=plan.agent_snapshot,
            created_at=now,
            updated_at=now,
        )
        await _link_examples(setting.id, plan.example_ids, now)
        await _add_models(session.id, plan.model_names, now)
    return int(session.id)


def _present(key: int | None) -> list[int]:
    return [] if key is None else [key]


def _session(session_id: int) -> Refers:
    return Refers("session_id", "practice session", PracticeSession, [session_id])


async def _insert_ordered(
    model: Any, owner: dict[str, Any], field: str, items: Sequence[Any]
) -> None:
    """One row of `model` per item, in order (`sort_order`), each with the `owner` columns."""
    if items:
        await database.aexecute(
            model.insert_many(
                [{**owner, field: item, "sort_order": order} for order, item in enumerate(items)]
            )
        )


async def _link_knowledge(session_id: int, knowledge_ids: Sequence[int]) -> None:
    await _insert_ordered(
        PracticeSessionKnowledge, {"session": session_id}, "knowledge", knowledge_ids
    )


async def _link_examples(setting_id: int, example_ids: Sequence[int], now: Any) -> None:
    await _insert_ordered(
        PracticeFewShotLink, {"setting": setting_id, "created_at": now}, "example", example_ids
    )


async def _add_models(session_id: int, model_names: Sequence[str], now: Any) -> None:
    await _insert_ordered(
        PracticeSessionModel, {"session": session_id, "created_at": now}, "model_name", model_names
    )


async def get_owned(org_id: int, user_id: int, session_id: int) -> PracticeSession | None:
    row: PracticeSession | None = await PracticeSession.aget_or_none(
        PracticeSession.id == session_id,
        PracticeSession.organization == org_id,
        PracticeSession.user == user_id,
    )
    return row


async def get_many(session_ids: Collection[int]) -> list[PracticeSession]:
    if not session_ids:
        return []
    query = PracticeSession.select().where(PracticeSession.id.in_(list(session_ids)))
    return await database.list(query)


async def list_owned(
    org_id: int,
    user_id: int,
    before_id: int,
    limit: int,
    project_ids: Collection[int] | None,
) -> list[PracticeSession]:
    """The user's sessions, newest first, before `before_id` (0: from the newest). With
    `project_ids`, only personal sessions and those of these projects."""
    query = PracticeSession.select().where(
        PracticeSession.organization == org_id, PracticeSession.user == user_id
    )
    if before_id:
        query = query.where(PracticeSession.id < before_id)
    if project_ids is not None:
        scope = PracticeSession.project.is_null()
        if project_ids:
            scope = scope | PracticeSession.project.in_(list(project_ids))
        query = query.where(scope)
    return await database.list(query.order_by(PracticeSession.id.desc()).limit(limit))


async def load(sessions: Sequence[PracticeSession], *, responses: bool) -> list[SessionBundle]:
    """Bundles in the order of `sessions`, in a fixed number of queries; a session
    deleted while they are read (its settings gone) is left out."""
    if not sessions:
        return []
    ids = [s.id for s in sessions]
    knowledge: dict[int, list[int]] = defaultdict(list)
    query = (
        PracticeSessionKnowledge.select(
            PracticeSessionKnowledge.session, PracticeSessionKnowledge.knowledge
        )
        .where(PracticeSessionKnowledge.session.in_(ids))
        .order_by(PracticeSessionKnowledge.session, PracticeSessionKnowledge.sort_order)
        .tuples()
    )
    for session_id, knowledge_id in await database.list(query):
        knowledge[session_id].append(knowledge_id)
    settings = {
        row.session_id: row
        for row in await database.list(
            PracticeSetting.select().where(PracticeSetting.session.in_(ids))
        )
    }
    links: dict[int, list[tuple[PracticeFewShotLink, FewShotExample]]] = defaultdict(list)
    link_query = (
        PracticeFewShotLink.select(PracticeFewShotLink, FewShotExample)
        .join(FewShotExample)
        .where(PracticeFewShotLink.setting.in_([s.id for s in settings.values()]))
        .order_by(PracticeFewShotLink.setting, PracticeFewShotLink.sort_order)
    )
    for link in await database.list(link_query):
        links[link.setting_id].append((link, link.example))
    recorded: dict[int, list[PracticeResponse]] = defaultdict(list)
    if responses:
        response_query = (
            PracticeResponse.select()
            .where(PracticeResponse.session.in_(ids))
            .order_by(PracticeResponse.session, PracticeResponse.id)
        )
        for response in await database.list(response_query):
            recorded[response.session_id].append(response)
    return [
        SessionBundle(
            session=s,
            knowledge_ids=knowledge[s.id],
            setting=settings[s.id],
            links=links[settings[s.id].id],
            responses=recorded[s.id],
        )
        for s in sessions
        if s.id in settings
    ]


async def update_session(
    session: PracticeSession,
    values: dict[str, Any],
    *,
    knowledge_ids: Sequence[int] | None,
    model_names: Sequence[str] | None,
    agent_snapshot: dict[str, Any] | None,
) -> None:
    """Write the session's fields and, unless None, replace its knowledge links, retire
    its models for new ones, renew the agent snapshot; one transaction."""
    now = utcnow()
    async with atomic(
        _session(session.id),
        Refers("project_id", "project", Project, _present(values.get("project"))),
        Refers("class_id", "practice class", PracticeClass, _present(values.get("practice_class"))),
        Refers("agent_id", "practice agent", PracticeAgent, _present(values.get("agent"))),
        Refers("knowledge_ids", "knowledge item", KnowledgeItem, knowledge_ids or ()),
    ):
        await _touch(session.id, now, **values)
        if knowledge_ids is not None:
            await database.aexecute(
                PracticeSessionKnowledge.delete().where(
                    PracticeSessionKnowledge.session == session.id
                )
            )
            await _link_knowledge(session.id, knowledge_ids)
        if model_names is not None:
            await database.aexecute(
                PracticeSessionModel.update(retired_at=now).where(
                    PracticeSessionModel.session == session.id,
                    PracticeSessionModel.retired_at.is_null(),
                )
            )
            await _add_models(session.id, model_names, now)
        if agent_snapshot is not None:
            await database.aexecute(
                PracticeSetting.update(agent_snapshot=agent_snapshot, updated_at=now).where(
                    PracticeSetting.session == session.id
                )
            )


async def update_settings(
    session_id: int, values: dict[str, Any], example_ids: Sequence[int] | None
) -> None:
    """Write the settings' fields and, unless None, replace the few-shot links in order;
    the session's updated_at moves too. One transaction."""
    now = utcnow()
    async with atomic(
        _session(session_id),
        Refers("few_shot_example_ids", "few-shot example", FewShotExample, example_ids or ()),
    ):
        await _touch(session_id, now)
        setting = await PracticeSetting.aget(PracticeSetting.session == session_id)
        await database.aexecute(
            PracticeSetting.update(updated_at=now, **values).where(PracticeSetting.id == setting.id)
        )
        if example_ids is not None:
            await database.aexecute(
                PracticeFewShotLink.delete().where(PracticeFewShotLink.setting == setting.id)
            )
            await _link_examples(setting.id, example_ids, now)


async def _touch(session_id: int, now: Any, **values: Any) -> None:
    """Write the session's `updated_at` (and `values`) first thing in a transaction that
    writes its rows: the row lock is then taken in the order a delete takes them
    (session, then its rows), so the two cannot deadlock. DoesNotExist once it is gone."""
    touched = await database.aexecute(
        PracticeSession.update(updated_at=now, **values).where(PracticeSession.id == session_id)
    )
    if not touched:
        raise PracticeSession.DoesNotExist(f"practice session {session_id}")


async def linked_example_ids(session_id: int) -> set[int]:
    query = (
        PracticeFewShotLink.select(PracticeFewShotLink.example)
        .join(PracticeSetting)
        .where(PracticeSetting.session == session_id)
        .tuples()
    )
    return {row[0] for row in await database.list(query)}


async def delete_session(session_id: int) -> None:
    # The only table whose foreign key keeps a session is the improvement batches'.
    scheduled = FailedPrecondition(
        f"practice session {session_id} is scheduled in an improvement batch",
        reason=errors_pb2.SESSION_SCHEDULED,
    )
    async with atomic(Referenced(scheduled)):
        await database.aexecute(PracticeSession.delete().where(PracticeSession.id == session_id))


async def session_models(session_id: int) -> list[PracticeSessionModel]:
    """Active models by sort order, then retired ones by id."""
    query = (
        PracticeSessionModel.select()
        .where(PracticeSessionModel.session == session_id)
        .order_by(
            PracticeSessionModel.retired_at.is_null(False),
            PracticeSessionModel.sort_order,
            PracticeSessionModel.id,
        )
    )
    return await database.list(query)


async def get_session_model(session_id: int, model_id: int) -> PracticeSessionModel | None:
    row: PracticeSessionModel | None = await PracticeSessionModel.aget_or_none(
        PracticeSessionModel.id == model_id, PracticeSessionModel.session == session_id
    )
    return row


async def record_response(
    session_id: int,
    model: PracticeSessionModel,
    prompt_text: str,
    response_text: str,
    token_usage: dict[str, Any],
    latency_ms: int,
) -> PracticeResponse:
    """The response, plus its PROMPT and RESPONSE events, in one transaction."""
    now = utcnow()
    async with atomic(
        _session(session_id),
        Refers("session_model_id", "session model", PracticeSessionModel, [model.id]),
    ):
        await _touch(session_id, now)
        response = await PracticeResponse.acreate(
            session=session_id,
            session_model=model.id,
            model_name=model.model_name,
            prompt_text=prompt_text,
            response_text=response_text,
            token_usage=token_usage,
            latency_ms=latency_ms,
            created_at=now,
        )
        await database.aexecute(
            PracticeEvent.insert_many(
                [
                    {
                        "session": session_id,
                        "type": event_type,
                        "text": text,
                        "response": response.id,
                        "data": {"session_model_id": model.id, "model_name": model.model_name},
                        "created_at": now,
                    }
                    for event_type, text in (
                        (EventProto.PROMPT, prompt_text),
                        (EventProto.RESPONSE, response_text),
                    )
                ]
            )
        )
    return response


async def response_ids(session_id: int, candidates: Collection[int]) -> set[int]:
    """Which of `candidates` are responses of the session."""
    if not candidates:
        return set()
    query = (
        PracticeResponse.select(PracticeResponse.id)
        .where(PracticeResponse.session == session_id, PracticeResponse.id.in_(list(candidates)))
        .tuples()
    )
    return {row[0] for row in await database.list(query)}


async def append_events(session_id: int, events: Sequence[NewEvent]) -> list[PracticeEvent]:
    """Append in order in one transaction; ids ascend in the order given."""
    now = utcnow()
    created = []
    responses = [e.response_id for e in events if e.response_id is not None]
    async with atomic(
        _session(session_id),
        Refers("events.response_id", "practice response", PracticeResponse, responses),
    ):
        await _touch(session_id, now)
        for event in events:
            created.append(
                await PracticeEvent.acreate(
                    session=session_id,
                    type=event.type,
                    text=event.text,
                    rating=event.rating,
                    response=event.response_id,
                    data=event.data,
                    created_at=now,
                )
            )
    return created


async def list_events(session_id: int, after_id: int, limit: int) -> list[PracticeEvent]:
    query = (
        PracticeEvent.select()
        .where(PracticeEvent.session == session_id, PracticeEvent.id > after_id)
        .order_by(PracticeEvent.id)
        .limit(limit)
    )
    return await database.list(query)


async def events_of(
    session_ids: Collection[int], per_session: int
) -> dict[int, list[PracticeEvent]]:
    """The first `per_session` events of each session, oldest first, in one query."""
    if not session_ids:
        return {}
    rank = (
        peewee.fn.ROW_NUMBER()
        .over(partition_by=[PracticeEvent.session], order_by=[PracticeEvent.id])
        .alias("rank")
    )
    ranked = (
        PracticeEvent.select(PracticeEvent.id, rank)
        .where(PracticeEvent.session.in_(list(session_ids)))
        .alias("ranked")
    )
    query = (
        PracticeEvent.select()
        .join(ranked, on=(PracticeEvent.id == ranked.c.id))
        .where(ranked.c.rank <= per_session)
        .order_by(PracticeEvent.session, PracticeEvent.id)
    )
    found: dict[int, list[PracticeEvent]] = defaultdict(list)
    for event in await database.list(query):
        found[event.session_id].append(event)
    return found


async def event_counts(session_ids: Collection[int]) -> dict[int, int]:
    if not session_ids:
        return {}
    query = (
        PracticeEvent.select(PracticeEvent.session, peewee.fn.COUNT(PracticeEvent.id))
        .where(PracticeEvent.session.in_(list(session_ids)))
        .group_by(PracticeEvent.session)
        .tuples()
    )
    return dict(await database.list(query))
