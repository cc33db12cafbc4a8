"""Correction sessions: the session rows, their change log, and the leases of the server
that prepares or deletes them.

Every change of a session's status, progress or document count happens in a
transaction that first locks the session's row (`SELECT ... FOR UPDATE` on PostgreSQL;
on SQLite a `BEGIN IMMEDIATE` transaction holds the single write lock): it bumps the
session's `version` and appends a `CorrectionChange` with that number, so the log has
one row per version, without gaps, whichever server replica wrote it. Watchers poll
`version` and read the log.

Preparing a session (sampling, attaching predictions) and deleting it is work a server
does in the background. The server doing it holds a lease on the session
(`lease_owner`, `lease_until`), taken with a conditional UPDATE and renewed at every
step; a lease that runs out (the server died) lets any replica take the session over,
and every step checks the session's status under the row lock, so a step that two
servers run is done once.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from corrigo.server.ops import metrics
from corrigo.server.store.database import BaseModel, atomic, database, is_sqlite, utcnow
from corrigo.server.store.datasets import Dataset
from corrigo.server.store.document_groups import DocumentGroup, DocumentGroupMember
from corrigo.server.store.identity import Organization, User
from corrigo.server.store.integrity import Refers
from corrigo.server.store.ml_models import MlModel, ModelVersion
from corrigo.server.store.projects import Project
from corrigo.server.store.sources import BytesField, Comment
from corrigo.v1.correction_pb2 import CorrectionSession as SessionProto

Status = SessionProto.Status
# The statuses in which a server has work to do on the session.
WORK_STATUSES = (Status.CREATED, Status.SAMPLING, Status.PREDICTING, Status.DELETING)
# Statuses of a closed session: it holds no documents (its claims are released).
CLOSED_STATUSES = (Status.FINISHED, Status.FAILED)
LEASE = datetime.timedelta(seconds=60)


class CorrectionSession(BaseModel):
    id = peewee.AutoField()
    uuid = peewee.CharField(max_length=36, unique=True)
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    # NULL once its dataset is deleted (`purge`).
    project = peewee.ForeignKeyField(Project, null=True)
    user = peewee.ForeignKeyField(User)
    model = peewee.ForeignKeyField(MlModel, on_delete="CASCADE")
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE")
    # Kept as a plain id: the group may be deleted, the session keeps its documents.
    document_group_id = peewee.IntegerField(null=True)
    # True when the documents are sampled from the session's candidates (given
    # documents or a group's), false for the whole dataset.
    scoped = peewee.BooleanField()
    strategy = peewee.IntegerField()
    sample_size = peewee.IntegerField()
    name = peewee.CharField(max_length=256)
    description = peewee.TextField()
    status = peewee.IntegerField(index=True)
    progress = peewee.DoubleField()
    document_count = peewee.IntegerField()
    predicted_score = peewee.IntegerField()
    failure_reason = peewee.TextField()
    # The version whose predictions the session shows (the latest when it was sampled).
    model_version = peewee.ForeignKeyField(ModelVersion, null=True, on_delete="SET NULL")
    # The number of the session's last change (see CorrectionChange).
    version = peewee.IntegerField()
    created = peewee.DateTimeField()
    finished = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField()
    lease_owner = peewee.CharField(max_length=32, null=True)
    lease_until = peewee.DateTimeField(null=True)


class CorrectionChange(BaseModel):
    """One change of a session's status, progress or document count."""

    session = peewee.ForeignKeyField(CorrectionSession, on_delete="CASCADE", index=False)
    version = peewee.IntegerField()
    status = peewee.IntegerField()
    progress = peewee.DoubleField()
    document_count = peewee.IntegerField()
    at = peewee.DateTimeField()

    class Meta:
        primary_key = peewee.CompositeKey("session", "version")


class CorrectionCandidate(BaseModel):
    """The documents a scoped session samples from, until it is sampled."""

    session = peewee.ForeignKeyField(CorrectionSession, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")

    class Meta:
        primary_key = peewee.CompositeKey("session", "comment")


class CorrectionDocument(BaseModel):
    """A sampled document of a session, with the predictions attached to it."""

    session = peewee.ForeignKeyField(CorrectionSession, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")
    position = peewee.IntegerField()
    predicted = BytesField(null=True)
    corrected_at = peewee.DateTimeField(null=True)

    class Meta:
        primary_key = peewee.CompositeKey("session", "comment")


class CorrectionClaim(BaseModel):
    """A document held by an open session of its project. The primary key (project,
    comment) is what keeps two open sessions from sharing a document."""

    project = peewee.ForeignKeyField(Project, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")
    session = peewee.ForeignKeyField(CorrectionSession, on_delete="CASCADE")

    class Meta:
        primary_key = peewee.CompositeKey("project", "comment")


@dataclass(frozen=True)
class SessionView:
    """A session with the model it improves."""

    row: CorrectionSession
    model: MlModel


@dataclass(frozen=True)
class NewSession:
    organization_id: int
    project_id: int
    user_id: int
    model: MlModel
    document_group_id: int | None
    strategy: int
    sample_size: int
    name: str
    description: str
    # How many documents the session is expected to hold.
    planned: int


def for_update(query: peewee.Select, lock: Any = True) -> peewee.Select:
    """The query locking the rows it reads (`lock`: FOR UPDATE, or the clause), on
    PostgreSQL (SQLite's write transaction already excludes every other writer)."""
    return query.for_update(lock) if not is_sqlite() else query


async def find_model(project_id: int, model_id: int) -> MlModel | None:
    """A model of one of the project's datasets."""
    rows = await database.list(
        MlModel.select().join(Dataset).where(MlModel.id == model_id, Dataset.project == project_id)
    )
    return rows[0] if rows else None


async def create(
    new: NewSession, candidates: Sequence[int] | None, lease_owner: str
) -> CorrectionSession:
    """The session in CREATED (change 1), leased to `lease_owner`, with its candidates:
    `candidates` (comment ids), or the document group's documents, or none (the whole
    dataset) when `candidates` is None and there is no group."""
    now = utcnow()
    scoped = candidates is not None or new.document_group_id is not None
    group = [] if new.document_group_id is None else [new.document_group_id]
    async with atomic(
        Refers("project_id", "project", Project, [new.project_id]),
        Refers("model_id", "model", MlModel, [new.model.id]),
        # A deleted dataset takes its models with it (at once, for readers).
        Refers("model_id", "model", Dataset, [new.model.dataset_id], shown=False),
        Refers("document_group_id", "document group", DocumentGroup, group),
        Refers("document_uids", "document", Comment, candidates or (), shown=False),
    ):
        # The dataset, then its model, first: in the order a dataset's delete locks them
        # (the session's foreign keys alone take the model first, and would deadlock).
        for model, key in ((Dataset, new.model.dataset_id), (MlModel, new.model.id)):
            query = model.select(model.id).where(model.id == key, *model.present())
            if not await database.list(for_update(query, "FOR KEY SHARE")):
                raise MlModel.DoesNotExist()
        row: CorrectionSession = await CorrectionSession.acreate(
            uuid=str(uuid.uuid4()),
            organization=new.organization_id,
            project=new.project_id,
            user=new.user_id,
            model=new.model.id,
            dataset=new.model.dataset_id,
            document_group_id=new.document_group_id,
            scoped=scoped,
            strategy=new.strategy,
            sample_size=new.sample_size,
            name=new.name,
            description=new.description,
            status=Status.CREATED,
            progress=0.0,
            document_count=new.planned,
            predicted_score=0,
            failure_reason="",
            version=1,
            created=now,
            updated_at=now,
            lease_owner=lease_owner,
            lease_until=now + LEASE,
        )
        await CorrectionChange.acreate(
            session=row.id,
            version=1,
            status=Status.CREATED,
            progress=0.0,
            document_count=new.planned,
            at=now,
        )
        if candidates is not None:
            await database.aexecute(
                CorrectionCandidate.insert_many(
                    [{"session": row.id, "comment": c} for c in candidates]
                )
            )
        elif new.document_group_id is not None:
            # Locked so that a concurrent delete cannot leave the session with no candidates.
            query = DocumentGroup.select(DocumentGroup.id).where(DocumentGroup.id.in_(group))
            if not await database.list(for_update(query)):
                raise DocumentGroup.DoesNotExist()
            members = DocumentGroupMember.select(
                peewee.Value(row.id), DocumentGroupMember.comment
            ).where(DocumentGroupMember.group == new.document_group_id)
            await database.aexecute(
                CorrectionCandidate.insert_from(
                    members, [CorrectionCandidate.session, CorrectionCandidate.comment]
                )
            )
    metrics.correction_session_entered(Status.Name(Status.CREATED))
    return row


def _with_model() -> peewee.Select:
    return CorrectionSession.select(CorrectionSession, MlModel).join(
        MlModel, on=(CorrectionSession.model == MlModel.id)
    )


def _view(row: CorrectionSession) -> SessionView:
    return SessionView(row, row.model)


async def get(project_id: int, session_id: int) -> SessionView | None:
    rows = await database.list(
        _with_model().where(
            CorrectionSession.id == session_id, CorrectionSession.project == project_id
        )
    )
    return _view(rows[0]) if rows else None


async def list_sessions(
    project_id: int, status: int, after_id: int, limit: int
) -> list[SessionView]:
    query = _with_model().where(
        CorrectionSession.project == project_id, CorrectionSession.id > after_id
    )
    if status:
        query = query.where(CorrectionSession.status == status)
    rows = await database.list(query.order_by(CorrectionSession.id).limit(limit))
    return [_view(r) for r in rows]


async def find(session_id: int) -> CorrectionSession | None:
    row: CorrectionSession | None = await CorrectionSession.aget_or_none(
        CorrectionSession.id == session_id
    )
    return row


async def version_of(session_id: int) -> tuple[int, int] | None:
    """The session's last change number and its status; None once it is gone."""
    rows = await database.list(
        CorrectionSession.select(CorrectionSession.version, CorrectionSession.status)
        .where(CorrectionSession.id == session_id)
        .tuples()
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


async def changes(session_id: int, after_version: int, limit: int) -> list[CorrectionChange]:
    return await database.list(
        CorrectionChange.select()
        .where(CorrectionChange.session == session_id, CorrectionChange.version > after_version)
        .order_by(CorrectionChange.version)
        .limit(limit)
    )


async def locked(session_id: int) -> CorrectionSession | None:
    """The session's row, locked until the transaction ends (call inside one)."""
    rows = await database.list(
        for_update(CorrectionSession.select().where(CorrectionSession.id == session_id))
    )
    return rows[0] if rows else None


async def record(row: CorrectionSession, **fields: Any) -> None:
    """Write `fields` to the locked session `row` as its next change: bump its version
    and log the change. Call inside the transaction that locked the row."""
    now = utcnow()
    for name, value in fields.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    await database.aexecute(
        CorrectionSession.update(**fields, version=row.version, updated_at=now).where(
            CorrectionSession.id == row.id
        )
    )
    await CorrectionChange.acreate(
        session=row.id,
        version=row.version,
        status=row.status,
        progress=row.progress,
        document_count=row.document_count,
        at=now,
    )
    if "status" in fields:
        metrics.correction_session_entered(Status.Name(Status.ValueType(row.status)))


async def release_claims(session_id: int) -> None:
    """The session's documents are free for other sessions again."""
    await database.aexecute(CorrectionClaim.delete().where(CorrectionClaim.session == session_id))


async def fail(session_id: int, reason: str) -> None:
    """FAILED with `reason`, releasing the documents, unless the session is already
    closed, being deleted or gone."""
    async with atomic():
        row = await locked(session_id)
        if row is None or row.status in (*CLOSED_STATUSES, Status.DELETING):
            return
        await release_claims(session_id)
        await record(row, status=Status.FAILED, failure_reason=reason)


async def mark_deleting(project_id: int, session_id: int) -> CorrectionSession | None:
    """DELETING (a change); the session as it is then, None when there is no such
    session in the project."""
    async with atomic():
        row = await locked(session_id)
        if row is None or row.project_id != project_id:
            return None
        if row.status != Status.DELETING:
            await record(row, status=Status.DELETING)
    return row


async def delete(session_id: int) -> None:
    """Remove a DELETING session with its documents, claims and log (by cascade)."""
    async with atomic():
        row = await locked(session_id)
        if row is not None and row.status == Status.DELETING:
            await database.aexecute(
                CorrectionSession.delete().where(CorrectionSession.id == session_id)
            )


async def advance(session_id: int, expected: int, status: int) -> None:
    """Move the session from `expected` to `status` (a change); nothing when another
    server already moved it."""
    async with atomic():
        row = await locked(session_id)
        if row is not None and row.status == expected:
            await record(row, status=status)


async def status_of(session_id: int) -> int | None:
    value = await database.scalar(
        CorrectionSession.select(CorrectionSession.status).where(CorrectionSession.id == session_id)
    )
    return None if value is None else int(value)


async def take_lease(session_id: int, owner: str) -> bool:
    """Lease the session to `owner` when it has work to do and no other server holds a
    live lease on it."""
    now = utcnow()
    taken = await database.aexecute(
        CorrectionSession.update(lease_owner=owner, lease_until=now + LEASE).where(
            CorrectionSession.id == session_id,
            CorrectionSession.status.in_(WORK_STATUSES),
            CorrectionSession.lease_owner.is_null()
            | (CorrectionSession.lease_owner == owner)
            | (CorrectionSession.lease_until < now),
        )
    )
    return bool(taken)


async def renew_lease(session_id: int, owner: str) -> bool:
    """Extend `owner`'s lease; False when it lost it (it ran out and another took it)."""
    renewed = await database.aexecute(
        CorrectionSession.update(lease_until=utcnow() + LEASE).where(
            CorrectionSession.id == session_id, CorrectionSession.lease_owner == owner
        )
    )
    return bool(renewed)


async def release_lease(session_id: int, owner: str) -> None:
    await database.aexecute(
        CorrectionSession.update(lease_owner=None, lease_until=None).where(
            CorrectionSession.id == session_id, CorrectionSession.lease_owner == owner
        )
    )


async def unleased(limit: int) -> list[int]:
    """Sessions with work to do that no server holds a live lease on: never leased, or
    left by a server that stopped, or whose server died (the lease ran out)."""
    now = utcnow()
    rows = await database.list(
        CorrectionSession.select(CorrectionSession.id)
        .where(
            CorrectionSession.status.in_(WORK_STATUSES),
            CorrectionSession.lease_owner.is_null() | (CorrectionSession.lease_until < now),
        )
        .order_by(CorrectionSession.id)
        .limit(limit)
        .tuples()
    )
    return [session_id for (session_id,) in rows]
