"""Improvement batches: sessions scheduled with gap-free numbers, and releases.

Numbers are decided by the database. Scheduling and releasing in an organization both
lock that organization's state row first (`SELECT ... FOR UPDATE` on PostgreSQL; on
SQLite a `BEGIN IMMEDIATE` transaction holds the database's single write lock), so they
run one after the other whatever the number of server processes: the next number is the
batch's count plus one, written in the same transaction as the session's entry, and a
release either happens before a schedule (which then opens a new batch) or after it
(and the session is in the released batch). Unique constraints on (batch, number) and
on the session back this up; a conflict or a serialization failure is retried.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee

from corrigo.server.api.errors import ConcurrentChange, NotFound
from corrigo.server.store.database import BaseModel, atomic, database, is_sqlite, retried, utcnow
from corrigo.server.store.identity import Organization
from corrigo.server.store.integrity import Refers
from corrigo.server.store.practice_sessions import PracticeEvent, PracticeSession
from corrigo.v1 import errors_pb2
from corrigo.v1.improvement_pb2 import ImprovementBatch as BatchProto
from corrigo.v1.practice_pb2 import PracticeEvent as EventProto

log = logging.getLogger("corrigo.improvement")
T = TypeVar("T")

# Conflicts are rare (the state row lock serialises writers); a few retries with jitter
# absorb the ones that happen, such as a deadlock victim or a racing first insert.


class ImprovementBatch(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    batch_key = peewee.CharField(max_length=32, unique=True)
    status = peewee.IntegerField()
    session_count = peewee.IntegerField(default=0)
    opened_at = peewee.DateTimeField(default=utcnow)
    released_at = peewee.DateTimeField(null=True)
    release_id = peewee.CharField(max_length=128, null=True)


class ImprovementState(BaseModel):
    """One row per organization; locking it serialises that organization's schedules
    and releases."""

    organization = peewee.ForeignKeyField(Organization, primary_key=True, on_delete="CASCADE")
    active_batch = peewee.ForeignKeyField(ImprovementBatch, null=True)


class ImprovementEntry(BaseModel):
    id = peewee.AutoField()
    batch = peewee.ForeignKeyField(ImprovementBatch, on_delete="CASCADE")
    session = peewee.ForeignKeyField(PracticeSession, unique=True)
    number = peewee.IntegerField()
    scheduled_at = peewee.DateTimeField(default=utcnow)


@dataclass(frozen=True)
class Scheduled:
    batch_key: str
    number: int
    scheduled_at: Any


async def _retrying(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation` (one transaction), again on a unique-constraint conflict (two
    batches numbered at once) or a conflict with a concurrent transaction."""
    return await retried(operation, (peewee.IntegrityError, ConcurrentChange))


async def _lock_state(org_id: int) -> ImprovementState:
    query = ImprovementState.select().where(ImprovementState.organization == org_id)
    if not is_sqlite():
        query = query.for_update()
    state: ImprovementState = (await database.list(query))[0]
    return state


async def _ensure_state(org_id: int) -> None:
    await database.aexecute(ImprovementState.insert(organization=org_id).on_conflict_ignore())


async def scheduled(session_id: int) -> Scheduled | None:
    rows = await database.list(
        ImprovementEntry.select(
            ImprovementBatch.batch_key, ImprovementEntry.number, ImprovementEntry.scheduled_at
        )
        .join(ImprovementBatch)
        .where(ImprovementEntry.session == session_id)
        .tuples()
    )
    return Scheduled(*rows[0]) if rows else None


async def schedule(org_id: int, session_id: int) -> Scheduled:
    """Put the session in the organization's active batch (opening one when none is)
    with the next number; a session already scheduled keeps its batch and number."""
    found = await scheduled(session_id)
    if found is not None:
        return found
    await _ensure_state(org_id)

    async def attempt() -> Scheduled:
        async with atomic(Refers("session_id", "practice session", PracticeSession, [session_id])):
            state = await _lock_state(org_id)
            # Another replica may have scheduled it while this one waited for the lock.
            again = await scheduled(session_id)
            if again is not None:
                return again
            now = utcnow()
            batch_id = state.active_batch_id
            if batch_id is None:
                batch = await ImprovementBatch.acreate(
                    organization=org_id,
                    batch_key=secrets.token_hex(8),
                    status=BatchProto.OPEN,
                    session_count=0,
                    opened_at=now,
                )
                batch_id = batch.id
                await database.aexecute(
                    ImprovementState.update(active_batch=batch_id).where(
                        ImprovementState.organization == org_id
                    )
                )
            batch = await ImprovementBatch.aget_by_id(batch_id)
            number = batch.session_count + 1
            await database.aexecute(
                ImprovementBatch.update(session_count=number).where(ImprovementBatch.id == batch_id)
            )
            await ImprovementEntry.acreate(
                batch=batch_id, session=session_id, number=number, scheduled_at=now
            )
            return Scheduled(batch.batch_key, number, now)

    return await _retrying(attempt)


async def release(org_id: int, release_id: str) -> ImprovementBatch:
    """Release the active batch under `release_id`; the batch released earlier under the
    same id is answered unchanged. NOT_FOUND when no batch is active."""
    earlier = await _released_as(org_id, release_id)
    if earlier is not None:
        return earlier
    await _ensure_state(org_id)

    async def attempt() -> ImprovementBatch:
        async with atomic():
            state = await _lock_state(org_id)
            again = await _released_as(org_id, release_id)
            if again is not None:
                return again
            if state.active_batch_id is None:
                raise NotFound("no active batch", reason=errors_pb2.NO_ACTIVE_BATCH)
            await database.aexecute(
                ImprovementBatch.update(
                    status=BatchProto.RELEASED, released_at=utcnow(), release_id=release_id
                ).where(ImprovementBatch.id == state.active_batch_id)
            )
            await database.aexecute(
                ImprovementState.update(active_batch=None).where(
                    ImprovementState.organization == org_id
                )
            )
            batch: ImprovementBatch = await ImprovementBatch.aget_by_id(state.active_batch_id)
            return batch

    return await _retrying(attempt)


async def _released_as(org_id: int, release_id: str) -> ImprovementBatch | None:
    row: ImprovementBatch | None = await ImprovementBatch.aget_or_none(
        ImprovementBatch.organization == org_id, ImprovementBatch.release_id == release_id
    )
    return row


async def find_batch(org_id: int, batch_key: str) -> ImprovementBatch:
    """A batch of the organization by its key, or with an empty key the active one."""
    if batch_key:
        row: ImprovementBatch | None = await ImprovementBatch.aget_or_none(
            ImprovementBatch.organization == org_id, ImprovementBatch.batch_key == batch_key
        )
        if row is None:
            raise NotFound(f"batch {batch_key!r} not found")
        return row
    rows = await database.list(
        ImprovementBatch.select()
        .join(ImprovementState, on=(ImprovementState.active_batch == ImprovementBatch.id))
        .where(ImprovementState.organization == org_id)
    )
    if not rows:
        raise NotFound("no active batch", reason=errors_pb2.NO_ACTIVE_BATCH)
    active: ImprovementBatch = rows[0]
    return active


async def list_batches(
    org_id: int, status: int, after_id: int, limit: int
) -> list[ImprovementBatch]:
    query = ImprovementBatch.select().where(
        ImprovementBatch.organization == org_id, ImprovementBatch.id > after_id
    )
    if status:
        query = query.where(ImprovementBatch.status == status)
    return await database.list(query.order_by(ImprovementBatch.id).limit(limit))


async def entries(batch_id: int, after_number: int, limit: int) -> list[tuple[int, int, Any]]:
    """(number, session_id, scheduled_at) after `after_number`, by number."""
    query = (
        ImprovementEntry.select(
            ImprovementEntry.number, ImprovementEntry.session, ImprovementEntry.scheduled_at
        )
        .where(ImprovementEntry.batch == batch_id, ImprovementEntry.number > after_number)
        .order_by(ImprovementEntry.number)
        .limit(limit)
        .tuples()
    )
    return await database.list(query)


async def has_prompt_and_response(session_id: int) -> bool | None:
    """Whether the session's log holds a PROMPT followed (later) by a RESPONSE; None once
    the session is gone (one statement, so a concurrent delete is never read as a log
    without events)."""
    first_prompt = peewee.fn.MIN(
        peewee.Case(None, [(PracticeEvent.type == EventProto.PROMPT, PracticeEvent.id)])
    )
    last_response = peewee.fn.MAX(
        peewee.Case(None, [(PracticeEvent.type == EventProto.RESPONSE, PracticeEvent.id)])
    )
    rows = await database.list(
        PracticeSession.select(first_prompt, last_response)
        .join(
            PracticeEvent,
            peewee.JOIN.LEFT_OUTER,
            on=(PracticeEvent.session == PracticeSession.id),
        )
        .where(PracticeSession.id == session_id)
        .group_by(PracticeSession.id)
        .tuples()
    )
    if not rows:
        return None
    prompt, response = rows[0]
    return prompt is not None and response is not None and prompt < response
