"""Sources and their comments.

A comment row keeps the keys the export sorts and filters on as integer microseconds
since the epoch (compared and converted without parsing), and everything it answers
as one serialized `corrigo.v1.Comment` (`body`), so a page of comments is built by
parsing bytes in C rather than by setting fields in Python.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from corrigo.server.api import wire
from corrigo.server.api.errors import AlreadyExists, NotFound
from corrigo.server.store import statistics
from corrigo.server.store.database import (
    BaseModel,
    Overlapped,
    Sql,
    as_datetime,
    atomic,
    database,
    fetch,
    is_sqlite,
    utcnow,
    write,
)
from corrigo.server.store.integrity import Refers, Unique, written
from corrigo.server.store.positions import stamped, stamped_insert
from corrigo.server.store.projects import Project
from corrigo.v1.comments_pb2 import Comment as CommentProto

# The most comments one sync (or one chunk of a bulk sync) writes in one transaction.
MAX_SYNC = 4096


class BytesField(peewee.Field):
    """Raw bytes: BLOB on SQLite, BYTEA on PostgreSQL. (peewee's BlobField asks the driver
    for a binary wrapper, which the asyncpg adapter does not have; asyncpg and sqlite3
    both take and give plain bytes.)"""

    field_type = "BLOB"

    def db_value(self, value: bytes | None) -> bytes | None:
        return None if value is None else bytes(value)


class Source(BaseModel):
    id = peewee.AutoField()
    # NULL once deleted: the rows wait for their purge (`purge`).
    project = peewee.ForeignKeyField(Project, null=True)
    hex_id = peewee.CharField(max_length=16, unique=True)
    name = peewee.CharField(max_length=64)
    title = peewee.CharField(max_length=256, default="")
    description = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("project", "name"), True),)

    @classmethod
    def present(cls) -> tuple[Any, ...]:
        return (cls.project.is_null(False),)


class Comment(BaseModel):
    id = peewee.BigAutoField()
    source = peewee.ForeignKeyField(Source, on_delete="CASCADE", index=False)
    comment_id = peewee.CharField(max_length=256)
    # `timestamp` and `created_at`, in microseconds since the epoch.
    ts_us = peewee.BigIntegerField()
    created_us = peewee.BigIntegerField()
    # The move clock's value (`MOVE_CLOCK`) of the sync that last changed `timestamp`
    # (null if none did).
    ts_moved_us = peewee.BigIntegerField(null=True)
    # Of the synced fields only: tells an unchanged re-sync from an update.
    content_hash = peewee.CharField(max_length=32)
    body = BytesField()
    # The position of the write that last changed the comment (`positions`).
    change_tx = peewee.BigIntegerField()


class CommentRemoved(BaseModel):
    """A deleted comment, at the delete's position (`positions`)."""

    source = peewee.ForeignKeyField(Source, on_delete="CASCADE", index=False)
    # The comment's internal id (never reused) and its id in the source.
    comment_id = peewee.BigIntegerField(primary_key=True)
    name = peewee.CharField(max_length=256)
    change_tx = peewee.BigIntegerField()
    removed_at = peewee.DateTimeField(default=utcnow)


def new_hex_id() -> str:
    return secrets.token_hex(8)


_EPOCH = datetime.datetime(1970, 1, 1)


def micros(value: datetime.datetime) -> int:
    """Microseconds since the epoch of a naive-UTC datetime."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def create_source(project: Project, name: str, title: str, description: str) -> Source:
    exists = AlreadyExists(f"source {name!r} already exists in {project.name!r}")
    async with atomic(
        Unique(Source, [Source.project, Source.name], exists),
        Refers("owner", "project", Project, {project.id: project.name}),
    ):
        now = utcnow()
        return await Source.acreate(
            project=project.id,
            created_at=now,
            updated_at=now,
            hex_id=new_hex_id(),
            name=name,
            title=title,
            description=description,
        )


def source_ref(source: Source) -> Refers:
    """The guard of a write to the source (named by the request's `name`)."""
    return Refers("name", "source", Source, {source.id: source.name})


_SOURCE = Sql(
    "SELECT id, hex_id, title, description, created_at, updated_at FROM source "
    "WHERE project_id = ? AND name = ?",
    bounded=True,
)


async def get_source(project: Project, name: str) -> Source:
    # Written out: every sync call asks, and Peewee's get_or_none costs more than the read.
    rows = await fetch(_SOURCE, (project.id, name))
    if not rows:
        raise NotFound(f"source {project.name}/{name} not found")
    source_id, hex_id, title, description, created_at, updated_at = rows[0]
    return Source(
        id=source_id,
        project=project.id,
        hex_id=hex_id,
        name=name,
        title=title,
        description=description,
        created_at=as_datetime(created_at),
        updated_at=as_datetime(updated_at),
    )


async def list_sources(project_id: int, after_id: int, limit: int) -> list[Source]:
    query = (
        Source.select()
        .where(Source.project == project_id, Source.id > after_id)
        .order_by(Source.id)
        .limit(limit)
    )
    return await database.list(query)


async def update_source(source: Source, changes: dict[str, str]) -> Source:
    if changes:
        for field, value in changes.items():
            setattr(source, field, value)
        source.updated_at = utcnow()
        async with atomic(source_ref(source)):
            written(
                await database.aexecute(
                    Source.update(**changes, updated_at=source.updated_at).where(
                        Source.id == source.id, *Source.present()
                    )
                ),
                Source,
            )
    return source


async def sources_by_hex(project_id: int, hex_ids: Iterable[str]) -> dict[str, int]:
    """hex id -> internal id of those of `hex_ids` that are sources of the project."""
    wanted = list(set(hex_ids))
    if not wanted:
        return {}
    query = Source.select(Source.hex_id, Source.id).where(
        Source.project == project_id, Source.hex_id.in_(wanted)
    )
    return dict(await database.list(query.tuples()))


@dataclass(frozen=True)
class SyncCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def _digest(synced: bytes) -> str:
    """What tells an unchanged re-sync from an update: a hash of the synced fields."""
    return hashlib.sha256(synced).hexdigest()[:32]


_SYNC_COLUMNS = "source_id, comment_id, ts_us, created_us, ts_moved_us, content_hash, body"
_UPSERT_TAIL = (
    " ON CONFLICT (source_id, comment_id) DO UPDATE SET ts_us = EXCLUDED.ts_us, "
    "ts_moved_us = EXCLUDED.ts_moved_us, content_hash = EXCLUDED.content_hash, "
    "body = EXCLUDED.body, change_tx = EXCLUDED.change_tx"
)


# Comments per part of a sync (one INSERT each): each is written while the next is
# checked and prepared.
SYNC_PART = 256

# The move clock (migration 0030) advanced by a sync that moved comments, as its last
# write: the row stays locked until the sync commits (PostgreSQL's row lock, SQLite's
# write lock), so its values are ordered as the syncs commit. Each value is at least
# the time it is taken, in microseconds since the epoch (`?`, twice).
MOVE_CLOCK = Sql(
    "UPDATE move_clock SET value = CASE WHEN value + 1 > ? THEN value + 1 ELSE ? END "
    "WHERE id = 1 RETURNING value"
)
# What the clock last committed: an export leaves out the comments stamped later.
MOVE_CLOCK_NOW = "(SELECT mc.value FROM move_clock AS mc WHERE mc.id = 1)"


# The source unless deleted, locked on PostgreSQL; by `is_sqlite()`.
_PRESENT = "SELECT id FROM source WHERE id = ? AND project_id IS NOT NULL"
_KEY_LOCK = {True: Sql(_PRESENT), False: Sql(_PRESENT + " FOR KEY SHARE")}


async def sync(
    source: Source, ids: Sequence[str], parts: Iterable[Sequence[CommentProto]]
) -> SyncCounts:
    """Upsert comments by id in one transaction: one read of the existing rows (of
    `ids`, every comment's), then a multi-row upsert per part. `parts` gives the
    comments (checked, ids unique, only synced fields set) SYNC_PART at a time and may
    raise instead: nothing is written then. The database works beside the event loop:
    the read runs while the first part is checked, each upsert while the next part is
    checked and its rows prepared, all on the transaction's connection. (The statements
    are written out: Peewee renders a thousand-row insert slower than the database runs
    it.) The comments whose `timestamp` changed are stamped last with the move clock's
    next value, so that an export that started before this sync commits leaves them
    out (`export.Query.moves_until`)."""
    now_us = micros(utcnow())
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    moved: list[str] = []
    bodies = _Bodies(source.hex_id, now_us)
    # Locked on PostgreSQL as the upsert will lock them (a lock that labellings' and
    # predictions' foreign keys do not wait for), so that no concurrent sync moves a
    # comment unseen between this read and the upsert (on SQLite the transaction holds
    # the write lock).
    lookup = Sql(
        "SELECT comment_id, content_hash, ts_us, created_us, ts_moved_us FROM comment "
        f"WHERE source_id = ? AND comment_id IN ({', '.join('?' * len(ids))})"
        + ("" if is_sqlite() else " FOR NO KEY UPDATE")
    )
    async with atomic(source_ref(source)), Overlapped() as overlapped:
        # On PostgreSQL the source is locked first, as its delete locks it before its
        # comments: in the other order (a comment, then the source for a new comment's
        # key) the two would deadlock. Gone or deleted, it answers NOT_FOUND (the guard).
        if not await fetch(_KEY_LOCK[is_sqlite()], (source.id,)):
            raise Source.DoesNotExist()
        await overlapped.start(lookup, [source.id, *ids])
        existing: dict[str, Sequence[Any]] | None = None
        for part in parts:
            synced = [c.SerializeToString(deterministic=True) for c in part]
            if existing is None:
                existing = {row[0]: row[1:] for row in await overlapped.result()}
            params: list[object] = []
            for i, comment in enumerate(part):
                digest = _digest(synced[i])
                comment_id = comment.id
                ts_us = comment.timestamp.seconds * 1_000_000 + comment.timestamp.nanos // 1000
                known = existing.get(comment_id)
                if known is None:
                    counts["new"] += 1
                    created_us, moved_us = now_us, None
                elif known[0] == digest:
                    counts["unchanged"] += 1
                    continue
                else:
                    counts["updated"] += 1
                    old_ts, created_us, moved_us = known[1], known[2], known[3]
                    if old_ts != ts_us:
                        moved.append(comment_id)
                params += (
                    source.id,
                    comment_id,
                    ts_us,
                    created_us,
                    moved_us,
                    digest,
                    bodies.body(synced[i], comment_id, created_us),
                )
            await overlapped.result()
            if params:
                await overlapped.start(_upsert(len(params) // 7, is_sqlite()), params)
        await overlapped.result()
        if moved:
            await _stamp_moves(overlapped, source.id, moved)
    statistics.comments_inserted(counts["new"])
    return SyncCounts(**counts)


async def _stamp_moves(overlapped: Overlapped, source_id: int, comment_ids: Sequence[str]) -> None:
    """Advance the move clock and stamp the moved comments, in the sync's transaction."""
    floor = micros(utcnow())
    await overlapped.start(MOVE_CLOCK, (floor, floor))
    stamp = (await overlapped.result())[0][0]
    stamps = Sql(
        "UPDATE comment SET ts_moved_us = ? WHERE source_id = ? "
        f"AND comment_id IN ({', '.join('?' * len(comment_ids))})"
    )
    await overlapped.start(stamps, [stamp, source_id, *comment_ids])
    await overlapped.result()


@functools.lru_cache(maxsize=16)
def _upsert(rows: int, sqlite: bool) -> Sql:
    return stamped_insert("comment", _SYNC_COLUMNS, 7, rows, _UPSERT_TAIL, sqlite)


# The field numbers of what a sync stores beside the synced fields (the server's).
_NUMBERS = {f.name: f.number for f in CommentProto.DESCRIPTOR.fields}


class _Bodies:
    """The stored answers of one sync: each the synced fields (serialized) followed by
    the server's, written as wire fields (the same message as setting them and
    serializing it all again). What all the sync's comments share is written once."""

    def __init__(self, source_hex: str, now_us: int) -> None:
        self.uid_prefix = source_hex + "."
        self.now_us = now_us
        self.created_now = wire.field(_NUMBERS["created_at"], _timestamp(now_us))
        # source_id, and last_modified and context: the sync's time.
        self.source = wire.field(_NUMBERS["source_id"], source_hex.encode())
        self.modified = wire.field(_NUMBERS["last_modified"], _timestamp(now_us)) + wire.field(
            _NUMBERS["context"], str(now_us // 1000).encode()
        )

    def body(self, synced: bytes, comment_id: str, created_us: int) -> bytes:
        created = (
            self.created_now
            if created_us == self.now_us
            else wire.field(_NUMBERS["created_at"], _timestamp(created_us))
        )
        uid = wire.field(_NUMBERS["uid"], (self.uid_prefix + comment_id).encode())
        return b"".join((synced, uid, self.source, created, self.modified))


def _timestamp(us: int) -> bytes:
    """A google.protobuf.Timestamp at `us` microseconds since the epoch (not before it)."""
    seconds, micros_part = divmod(us, 1_000_000)
    nanos = micros_part * 1000
    return wire.int_field(1, seconds) + (wire.int_field(2, nanos) if nanos else b"")


async def get_comment(source: Source, comment_id: str) -> CommentProto:
    body = await database.scalar(
        Comment.select(Comment.body).where(
            Comment.source == source.id, Comment.comment_id == comment_id
        )
    )
    if body is None:
        raise NotFound(f"comment {comment_id!r} not found in source {source.name!r}")
    return CommentProto.FromString(bytes(body))


async def delete_comments(source: Source, comment_ids: Sequence[str]) -> int:
    """Delete comments by id, each leaving its uid at the delete's position."""
    wanted = list(comment_ids)
    if not wanted:
        return 0
    marks = ", ".join("?" * len(wanted))
    column, value = stamped(is_sqlite())
    removed = Sql(
        f"INSERT INTO comment_removed (source_id, comment_id, name, removed_at{column}) "
        f"SELECT source_id, id, comment_id, ?{value} FROM comment "
        f"WHERE source_id = ? AND comment_id IN ({marks})"
    )
    delete = Sql(f"DELETE FROM comment WHERE source_id = ? AND comment_id IN ({marks})")
    async with atomic():
        await write(removed, (CommentRemoved.removed_at.db_value(utcnow()), source.id, *wanted))
        return (await write(delete, (source.id, *wanted))).rowcount


# Uids (with their sources) that one read on the event loop's thread may look up.
_LOOP_READ_PARAMS = 256


async def comments_by_uid(
    source_ids: dict[str, int], uids: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(source hex, comment id) -> internal comment id, for those that exist; `source_ids`
    maps the allowed sources' hex ids to internal ids."""
    by_source: dict[int, list[str]] = {}
    for source_hex, comment_id in uids:
        by_source.setdefault(source_ids[source_hex], []).append(comment_id)
    if not by_source:
        return {}
    # Written out: Peewee renders a few thousand uids slower than the database finds them.
    clauses = " OR ".join(
        f"(source_id = ? AND comment_id IN ({', '.join('?' * len(ids))}))"
        for ids in by_source.values()
    )
    params = [value for source_id, ids in by_source.items() for value in (source_id, *ids)]
    # Thousands of lookups would hold the event loop: they go to a pool thread.
    statement = Sql(
        f"SELECT source_id, comment_id, id FROM comment WHERE {clauses}",
        bounded=len(params) <= _LOOP_READ_PARAMS,
    )
    rows = await fetch(statement, params)
    hex_of = {internal: hex_id for hex_id, internal in source_ids.items()}
    return {(hex_of[source], comment_id): pk for source, comment_id, pk in rows}
