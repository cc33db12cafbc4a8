"""The database: opening it from a URL, the model base class, and migrations.

SQLite (aiosqlite) is the embedded default; a `postgresql://` URL selects PostgreSQL
(asyncpg). All access goes through `playhouse.pwasyncio` (with the faster connections of
`drivers`), so no query blocks the loop. Hot paths write their SQL out (`Sql`, `fetch`).
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import peewee
from playhouse.migrations import Runner
from playhouse.pwasyncio import AsyncModel, AsyncPostgresqlDatabase, AsyncSqliteDatabase

from corrigo.server.store.drivers import PostgresqlDatabase, SqliteDatabase, driver_errors

Database: TypeAlias = AsyncSqliteDatabase | AsyncPostgresqlDatabase

# Models bind to this proxy; `open_database` points it at the real database.
database = peewee.DatabaseProxy()

MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant key for the PostgreSQL advisory lock that serialises migrations of
# replicas starting together.
_MIGRATION_LOCK_KEY = 0x636F7272


class BaseModel(AsyncModel):
    class Meta:
        database = database
        legacy_table_names = False


def as_datetime(value: Any) -> datetime.datetime | None:
    """A DateTimeField column as a driver gives it (SQLite: ISO text; asyncpg: a
    datetime) as the field's value. (Peewee's own conversion tries strptime formats in
    turn: many times slower on a hot path.)"""
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(value)


M = TypeVar("M", bound=peewee.Model)


def loaded(model: type[M], **values: Any) -> M:
    """A `model` instance of a row read by hand-written SQL, its fields' values as given.
    (Model(**values) sets each field through its descriptor, marking it changed: on a
    hot path, more than the read itself costs.)"""
    instance = model.__new__(model)
    instance.__data__ = values
    instance._dirty = set()  # type: ignore[attr-defined]
    instance.__rel__ = {}
    return instance


def utcnow() -> datetime.datetime:
    """Now in UTC, naive: every timestamp column holds naive UTC."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, or a bare path."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    if url.startswith("sqlite://"):
        raise ValueError(f"unsupported SQLite URL {url!r}: use sqlite:///PATH")
    return url


def connect(url: str, *, pool_size: int = 10) -> Database:
    """Open the database named by `url` and bind the models to it."""
    db: Database
    if is_postgres(url):
        db = PostgresqlDatabase(url, pool_size=pool_size, pool_min_size=1)
    else:
        path = sqlite_path(url)
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        db = SqliteDatabase(
            path,
            pool_size=pool_size,
            # WAL with synchronous=NORMAL: a committed transaction survives a process
            # crash; busy_timeout lets writers queue instead of failing at once.
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 10000,
            },
        )
    database.initialize(db)
    return db


async def migrate(db: Database) -> list[str]:
    """Apply pending migrations; answers the names applied."""

    def run() -> list[str]:
        if isinstance(db, AsyncPostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
            try:
                return list(Runner(db, str(MIGRATIONS)).up())
            finally:
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
        return list(Runner(db, str(MIGRATIONS)).up())

    return await db.run(run)


async def close(db: Database) -> None:
    await db.close_pool()


async def release_connection() -> None:
    """Give the calling task's pooled connection back (outside a transaction). For a
    long-lived task that waits between queries, such as a watch stream: a task keeps its
    connection until it ends otherwise. The next query takes one again."""
    await database.obj.aclose()


def atomic() -> Any:
    """`async with atomic():` a write transaction (a savepoint when nested). On SQLite it
    takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction that read
    first cannot wait for a concurrent writer and fails at once with "database is
    locked", while an immediate one queues behind it (busy_timeout)."""
    db = database.obj
    if isinstance(db, AsyncSqliteDatabase):
        return db.atomic(lock_type="IMMEDIATE")
    return db.atomic()


class Sql:
    """A hand-written statement for a hot path, with `?` placeholders: rendered once per
    database class (PostgreSQL takes `%s`) and run without building a Peewee query, whose
    rendering costs several times what a small indexed query does. Column values come
    back as the driver gives them: convert with the model field's `python_value`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._rendered: dict[type, str] = {}

    def render(self, db: Database) -> str:
        rendered = self._rendered.get(type(db))
        if rendered is None:
            rendered = self._rendered[type(db)] = self.text.replace("?", db.param)
        return rendered


class Overlapped:
    """One statement at a time running on a held connection (`aconnect()`'s, such as a
    transaction's) while the task goes on: `await start(...)`, then `await result()` for
    its rows. Leaving the block waits for a statement still running, whatever happened."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._running: asyncio.Future[Any] | None = None

    async def start(self, statement: Sql, params: Sequence[Any]) -> None:
        assert self._running is None, "one statement at a time"
        sql = statement.render(database.obj)
        self._running = asyncio.ensure_future(self._execute(sql, params))
        # A task first runs when its creator yields: one turn of the loop hands the
        # statement to the driver, so the database works while the caller goes on.
        await asyncio.sleep(0)

    async def _execute(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with driver_errors:
            cursor = await self._connection.execute(sql, params)
        rows: list[Any] = cursor.fetchall()
        return rows

    async def result(self) -> list[Any]:
        """The rows of the statement started last ([] when none is running)."""
        running, self._running = self._running, None
        return await running if running is not None else []

    async def __aenter__(self) -> Overlapped:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        running, self._running = self._running, None
        if running is None:
            return
        if exc_type is None:
            await running
            return
        await asyncio.wait([running])
        if not running.cancelled():
            running.exception()  # retrieved: the block's own error is the one raised


async def fetch(statement: Sql, params: Sequence[Any]) -> list[Any]:
    """The rows of a small indexed read on the bound database (`drivers`: outside a
    transaction it holds no connection past itself, and on SQLite it runs on the loop's
    thread)."""
    db = database.obj
    rows: list[Any] = await db.read(statement.render(db), params)
    return rows
