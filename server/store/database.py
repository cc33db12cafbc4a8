"""The database: opening it from a URL, the model base class, and migrations.

SQLite (aiosqlite) is the embedded default; a `postgresql://` URL selects PostgreSQL
(asyncpg). All access goes through `playhouse.pwasyncio`, so no query blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import peewee
from peewee import __exception_wrapper__ as _driver_errors  # type: ignore[attr-defined]
from playhouse.migrations import Runner
from playhouse.pwasyncio import (
    AsyncModel,
    AsyncPostgresqlConnection,
    AsyncPostgresqlDatabase,
    AsyncSqliteConnection,
    AsyncSqliteDatabase,
    AsyncSqlitePool,
    CursorAdapter,
)

Database: TypeAlias = AsyncSqliteDatabase | AsyncPostgresqlDatabase
T = TypeVar("T")

# Models bind to this proxy; `open_database` points it at the real database.
database = peewee.DatabaseProxy()

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_URL = "sqlite:///corrigo.sqlite3"
# Arbitrary constant key for the PostgreSQL advisory lock that serialises migrations of
# replicas starting together.
_MIGRATION_LOCK_KEY = 0x636F7272


class BaseModel(AsyncModel):
    class Meta:
        database = database
        legacy_table_names = False


def _run_query(conn: sqlite3.Connection, sql: str, params: Any) -> tuple[Any, ...]:
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall(), cursor.lastrowid, cursor.rowcount, cursor.description
    finally:
        cursor.close()


class _ReadyPool:
    """Once the pool exists, a connection is taken from it directly. (pwasyncio first
    awaits the pool's creation through asyncio.wait_for, which starts a task, on every
    connection a task takes.)"""

    _pool: Any
    _closing: bool
    _acquire_timeout: float

    async def _acquire_conn_async(self) -> Any:
        pool = self._pool
        if pool is None or self._closing:
            return await super()._acquire_conn_async()  # type: ignore[misc]
        try:
            with _driver_errors:
                conn = await self._pool_acquire(pool)  # type: ignore[attr-defined]
        except TimeoutError:
            raise peewee.OperationalError(
                f"Timed out acquiring connection from pool (acquire_timeout="
                f"{self._acquire_timeout})."
            ) from None
        conn._pool = pool
        return conn


class SqliteConnection(AsyncSqliteConnection):
    """A query in one trip to the connection's thread. (aiosqlite's cursor API makes
    three, for execute, fetchall and close, each a wake-up of the event loop: more time
    than a small indexed query takes.)"""

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        # aiosqlite runs `_execute(fn, ...)` on the connection's own thread.
        result: T = await self.conn._execute(fn, self.conn._conn, *args)
        return result

    async def _execute(self, sql: str, params: Any = None) -> CursorAdapter:
        rows, lastrowid, rowcount, description = await self._in_thread(
            _run_query, sql, params or ()
        )
        return CursorAdapter(rows, lastrowid=lastrowid, rowcount=rowcount, description=description)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(sqlite3 connection, *args)` on the connection's thread."""
        await self._acquire_lock()
        try:
            return await self._in_thread(fn, *args)
        finally:
            self._lock.release()


def _query_then(
    conn: sqlite3.Connection, sql: str, params: Any, then: Callable[[list[Any]], T]
) -> T:
    cursor = conn.execute(sql, params)
    try:
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return then(rows)


async def query_then(
    connection: Any, sql: str, params: Sequence[Any], then: Callable[[list[Any]], T]
) -> T:
    """The rows of `sql` on `connection` (as `aconnect()` answers it), passed through
    `then`: on SQLite in the connection's thread, in the same trip, so that work runs
    beside the event loop's; elsewhere once the rows are here."""
    if isinstance(connection, SqliteConnection):
        return await connection.call(_query_then, sql, params, then)
    cursor = await connection.execute(sql, params)
    return then(cursor.fetchall())


class _Stopped(Exception):
    """The consumer of `produce_in_thread` went away."""


_END = object()


async def produce_in_thread(
    connection: Any,
    produce: Callable[[sqlite3.Connection, Callable[[Any], None], threading.Event], None],
    ahead: int = 2,
) -> AsyncGenerator[Any, None]:
    """Run `produce(sqlite3 connection, emit, stopping)` on a SQLite connection's own
    thread (`connection` as `aconnect()` answers it), and yield what it `emit`s. The
    producer runs on without waiting for the event loop between items; `emit` blocks
    while `ahead` items are not yet taken, and raises once the consumer has gone away
    (`stopping` is then set too). The producer is never abandoned mid-query: leaving
    the iteration waits for it to return."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()
    room = threading.Semaphore(ahead)
    stopping = threading.Event()

    def emit(item: Any) -> None:
        room.acquire()
        if stopping.is_set():
            raise _Stopped
        loop.call_soon_threadsafe(items.put_nowait, item)

    def run(conn: sqlite3.Connection) -> None:
        with contextlib.suppress(_Stopped):
            produce(conn, emit, stopping)

    done = asyncio.ensure_future(connection.call(run))
    # After every item: aiosqlite completes the future through the same loop queue.
    done.add_done_callback(lambda _: items.put_nowait(_END))
    try:
        while True:
            item = await items.get()
            if item is _END:
                done.result()
                return
            room.release()
            yield item
    finally:
        stopping.set()
        room.release()
        await asyncio.wait([done])


class _SqlitePool(AsyncSqlitePool):
    async def acquire(self, timeout: float | None = None) -> SqliteConnection:  # noqa: ASYNC109 - the base class signature
        # An idle connection is handed over at once (the base class waits for one through
        # asyncio.wait_for, which starts a task even when one is ready).
        if not self._closed:
            try:
                connection: SqliteConnection = self._queue.get_nowait()
                return connection
            except asyncio.QueueEmpty:
                pass
        connection = await super().acquire(timeout)
        return connection

    async def _create_connection(self) -> SqliteConnection:
        made = await super()._create_connection()
        return SqliteConnection(made.conn)


class SqliteDatabase(_ReadyPool, AsyncSqliteDatabase):
    """pwasyncio's SQLite database, with queries in one thread trip each."""

    async def _create_pool_async(self) -> _SqlitePool:
        pool = _SqlitePool(
            self.database,
            pool_size=1 if self.database == ":memory:" else self._pool_size,
            on_connect=self._add_conn_hooks,
            timeout=self._timeout,
            **self.connect_params,
        )
        return await pool.initialize()


class _PostgresConnection(AsyncPostgresqlConnection):
    """Queries through asyncpg's statement cache: one round trip for a statement run
    before on the connection (pwasyncio prepares every statement anew: two trips)."""

    async def _execute(self, sql: str, params: Any = None) -> CursorAdapter:
        if params:
            sql = self._translate_placeholders(sql)
        # asyncpg's own `execute` and `fetch` are this call without the status or without
        # the rows; the adapter needs both.
        records, status, _ = await self.conn._execute(
            sql, params or (), 0, None, return_status=True
        )
        # A Record iterates over its values; its column names are its keys().
        names = records[0].keys() if records else ()
        description = [(name,) for name in names]
        # The command status ends with the row count: "UPDATE 3", "INSERT 0 3".
        tail = (status.decode() if status else "").rsplit(" ", 1)
        rowcount = int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else len(records)
        return CursorAdapter(records, rowcount=rowcount, description=description)


class PostgresqlDatabase(_ReadyPool, AsyncPostgresqlDatabase):
    """pwasyncio's PostgreSQL database, with asyncpg's statement cache."""

    async def _pool_acquire(self, pool: Any) -> _PostgresConnection:
        conn = await asyncio.wait_for(pool.acquire(), timeout=self._acquire_timeout)
        return _PostgresConnection(conn)


def as_datetime(value: Any) -> datetime.datetime | None:
    """A DateTimeField column as a driver gives it (SQLite: ISO text; asyncpg: a
    datetime) as the field's value. (Peewee's own conversion tries strptime formats in
    turn: many times slower on a hot path.)"""
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(value)


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


def atomic() -> Any:
    """`async with atomic():` a transaction (a savepoint when nested) on the bound database."""
    return database.obj.atomic()


def write_atomic() -> Any:
    """`async with write_atomic():` a transaction that reads and then writes. On SQLite it
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
    transaction's) while the task goes on: `start` it, `await result()` for its rows.
    Leaving the block waits for a statement still running, whatever happened."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._running: asyncio.Future[Any] | None = None

    def start(self, statement: Sql, params: Sequence[Any]) -> None:
        assert self._running is None, "one statement at a time"
        sql = statement.render(database.obj)
        self._running = asyncio.ensure_future(self._execute(sql, params))

    async def _execute(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with _driver_errors:
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
    """The rows of a hand-written statement on the bound database."""
    db = database.obj
    cursor = await db.aexecute_sql(statement.render(db), params)
    rows: list[Any] = cursor.fetchall()
    return rows
