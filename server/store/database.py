"""The database: opening it from a URL, the model base class, units of work, migrations.

Peewee is the model and query layer: models declare the tables and queries are built
with Peewee. Statements run on the store's own connections (`connections`, with
`sqlite` or `postgres` under it): Peewee's synchronous API runs inside `run`, and each
statement it sends is awaited on the event loop. Hot paths write their SQL out (`Sql`,
`fetch`).

Every statement goes through `execute`, which picks its connection (the unit's, or the
reads or writes pool) and its bound (`connections.bound`: the call's deadline or the
statement limit).

The loop rule (SQLite): a statement runs on the event loop's own thread only when the
rows it examines are bounded by the request, not by the data: a lookup by key, or a
keyset page served by an index in its order (examining about `limit` rows). Such a
statement is declared `Sql(..., bounded=True)` where it is written; `fetch` and
`read_page` run it on the loop (`sqlite.LoopReads`), and everything else (counts, pages
whose filter can make them examine rows they do not return) on the store's threads. On
PostgreSQL every statement runs in the database's own process, so the loop never waits
on one.

Peewee's own transactions (`Database.atomic()` and the helpers built on it, such as
`get_or_create`) keep their state per thread, which every task on the
event loop shares: they raise, except for migrations, which run alone before serving.
Transactions are the store's `atomic()`.

Deletes whose rows grow with the data (a source, a dataset) are deferred (`purge`): one
short transaction takes the row out of its project, so readers no longer reach it and its
name is free, and background steps of a few thousand rows remove the rest. A model whose
rows can be doomed says which rows readers see (`BaseModel.present`).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import greenlet
import peewee
from playhouse.migrations import Runner

from corrigo.server.api.errors import ConcurrentChange
from corrigo.server.ops import metrics, tracing
from corrigo.server.store import commits, connections
from corrigo.server.store.connections import (
    Connection,
    ConnectionLost,
    Pool,
    Result,
    bound,
    held,
    unit,
)
from corrigo.server.store.integrity import Guard, guarded
from corrigo.server.store.postgres import PostgresConnection
from corrigo.server.store.sqlite import LoopReads, Pace, SqliteConnection

T = TypeVar("T")

log = logging.getLogger("corrigo.store")

# Models bind to this proxy; `connect` points it at the real database.
database = peewee.DatabaseProxy()

MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant key for the PostgreSQL advisory lock that serialises migrations of
# replicas starting together.
_MIGRATION_LOCK_KEY = 0x636F7272
# Migrations run statements with no limit: they run alone, before the server serves.
_MIGRATION_SECONDS = 24 * 3600.0
# Set while migrations run: the only time Peewee's own transactions may be used.
_migrating: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "corrigo_migrating", default=False
)


def _wait(awaitable: Any) -> Any:
    """Inside `run`: hand `awaitable` to the task running it, and answer its result."""
    parent = greenlet.getcurrent().parent
    if parent is None:
        raise RuntimeError("Peewee's synchronous API runs only inside database.run()")
    return parent.switch(awaitable)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` with Peewee's synchronous API (list(query), query.execute(), ...): it
    runs in a greenlet, and each statement it sends is awaited here, on the loop."""
    child = greenlet.greenlet(fn)
    child.gr_context = greenlet.getcurrent().gr_context
    value = child.switch(*args, **kwargs)
    while not child.dead:
        try:
            answer = await value
        except BaseException as error:
            value = child.throw(error)
        else:
            value = child.switch(answer)
    result: T = value
    return result


class Cursor:
    """A statement's result as Peewee reads a DB-API cursor."""

    def __init__(self, result: Result) -> None:
        self._rows = iter(result.rows)
        self.rowcount = result.rowcount
        self.lastrowid = result.lastrowid
        self.description = [(name,) for name in result.columns] or None

    def fetchone(self) -> Any:
        return next(self._rows, None)

    def fetchmany(self, size: int = 1) -> list[Any]:
        return [row for _, row in zip(range(size), self._rows, strict=False)]

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return self._rows

    def close(self) -> None:
        self._rows = iter(())


class _Store:
    """What both databases share: Peewee's statements run by `execute`, transactions by
    `connections`, and the async counterparts of Peewee's query methods."""

    # Read-only connections for reads outside a transaction, and the transactions' own.
    reads: Pool
    writes: Pool
    begin_statement: str
    # The database's name in spans (OpenTelemetry's db.system).
    system: str
    loop_reads: LoopReads | None = None
    # Peewee's, beside this class in each database's bases.
    get_sql_context: Callable[..., Any]

    def execute(self, query: Any, commit: Any = None, **context_options: Any) -> Cursor:
        """Peewee's query: a SELECT reads, anything else writes (`execute` below)."""
        sql, params = self.get_sql_context(**context_options).sql(query).query()
        writes = not isinstance(query, peewee.SelectBase)
        return Cursor(_wait(execute(sql, params, writes=writes)))

    def execute_sql(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        # Peewee's raw SQL (introspection, migrations' DDL) may write.
        return Cursor(_wait(execute(sql, params or (), writes=True)))

    # Peewee's own transactions (`atomic()`, `manual_commit()`, and `get_or_create` through
    # them, all of which begin or push one here): migrations only, through the unit's
    # connection.
    def push_transaction(self, transaction: Any) -> None:
        _peewee_transactions_allowed()
        super().push_transaction(transaction)  # type: ignore[misc]

    def begin(self, *args: Any, **kwargs: Any) -> None:
        _peewee_transactions_allowed()
        self.execute_sql("BEGIN")

    def commit(self) -> None:
        self.execute_sql("COMMIT")

    def rollback(self) -> None:
        self.execute_sql("ROLLBACK")

    async def list(self, query: Any) -> list[Any]:
        return await run(list, query)

    async def aexecute(self, query: Any) -> Any:
        return await run(query.execute)

    async def scalar(self, query: Any) -> Any:
        return await run(query.scalar)

    async def count(self, query: Any) -> int:
        return await run(query.count)

    async def exists(self, query: Any) -> bool:
        return await run(query.exists)

    async def close_pool(self) -> None:
        if self.loop_reads is not None:
            self.loop_reads.close()
        await self.reads.close()
        if self.writes is not self.reads:
            await self.writes.close()


def _peewee_transactions_allowed() -> None:
    if not _migrating.get():
        raise RuntimeError(
            "Peewee's transactions keep their state per thread, which every task on the "
            "event loop shares: use corrigo.server.store.database.atomic()"
        )


def split(pool_size: int) -> tuple[int, int]:
    """(read connections, write connections) of a pool of `pool_size`: half for each
    (at least one), as writes queue behind the database's locks and reads must not."""
    if pool_size < 2:
        raise ValueError("the database pool needs at least 2 connections (reads and writes)")
    writes = pool_size // 2
    return pool_size - writes, writes


class SqliteDatabase(_Store, peewee.SqliteDatabase):
    # The write lock is taken up front: a deferred transaction that read first cannot
    # wait for a concurrent writer and fails at once with "database is locked", while an
    # immediate one queues behind it.
    begin_statement = "BEGIN IMMEDIATE"
    system = "sqlite"

    def __init__(self, path: str, pool_size: int) -> None:
        super().__init__(path)
        if path == ":memory:":
            # An in-memory database is one connection's own: one connection for all.
            self.reads = self.writes = Pool(lambda: SqliteConnection.open(path, read_only=False), 1)
            return
        # SQLite writes one transaction at a time per file: one writer connection, whose
        # queue is fair and bounded by each call's deadline, and the rest for reads.
        self.reads = Pool(
            lambda: SqliteConnection.open(path, read_only=True), max(1, pool_size - 1)
        )
        self.writes = Pool(lambda: SqliteConnection.open(path, read_only=False), 1)
        self.loop_reads = LoopReads(path)


class PostgresqlDatabase(_Store, peewee.PostgresqlDatabase):
    begin_statement = "BEGIN"
    system = "postgresql"

    def __init__(self, url: str, pool_size: int) -> None:
        super().__init__(url)
        reads, writes = split(pool_size)
        self.reads = Pool(lambda: PostgresConnection.open(url, read_only=True), reads)
        self.writes = Pool(lambda: PostgresConnection.open(url, read_only=False), writes)


Database: TypeAlias = SqliteDatabase | PostgresqlDatabase


def _store() -> Database:
    db: Database = database.obj
    return db


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


async def execute(
    sql: str,
    params: Sequence[Any],
    *,
    writes: bool,
    bounded: bool = False,
    pace: Pace | None = None,
    conn: Connection | None = None,
) -> Result:
    """The one path every statement runs by. On `conn`, or the current unit's connection;
    else, under the loop rule (`bounded`, a read), on the event loop's thread (a page a
    slice at a time while `pace` says its rows come quickly); else in a unit of its own
    from the reads or the writes pool. Bounded by its call (`connections.bound`). A read
    that lost its connection before answering is tried once more on a fresh one."""
    db = _store()
    with tracing.statement(sql, db.system), metrics.statement():
        conn = conn or held()
        if conn is not None:
            return await conn.execute(sql, params, bound())
        if bounded and not writes and db.loop_reads is not None and not (pace and pace.slow):
            rows = await db.loop_reads.read(sql, params, pace)
            if rows is not None:
                return Result(rows, len(rows))
        pool = db.writes if writes else db.reads
        try:
            async with unit(pool) as conn:
                result = await conn.execute(sql, params, bound())
        except ConnectionLost:
            if writes:
                raise
        else:
            if writes:
                commits.committed()
            return result
        async with unit(pool) as conn:
            return await conn.execute(sql, params, bound())


# Typed as Any, as Peewee's models are dynamic: fields add `<name>_id` attributes.
_Model: Any = peewee.Model


class BaseModel(_Model):
    """Models with async counterparts of Peewee's lookups."""

    class Meta:
        database = database
        legacy_table_names = False

    @classmethod
    def present(cls) -> tuple[Any, ...]:
        """The conditions a row meets while it exists for readers (a deleted row may wait
        for its purge, `purge`): none for most models."""
        return ()

    @classmethod
    async def acreate(cls: type[M], **values: Any) -> M:
        return await run(cls.create, **values)

    @classmethod
    async def aget(cls: type[M], *query: Any, **filters: Any) -> M:
        return await run(cls.get, *query, **filters)

    @classmethod
    async def aget_or_none(cls: type[M], *query: Any, **filters: Any) -> M | None:
        return await run(cls.get_or_none, *query, **filters)

    @classmethod
    async def aget_by_id(cls: type[M], pk: Any) -> M:
        return await run(cls.get_by_id, pk)


M = TypeVar("M", bound=BaseModel)


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


def connect(url: str, *, pool_size: int = 16) -> Database:
    """Open the database named by `url` and bind the models to it."""
    db: Database
    if is_postgres(url):
        db = PostgresqlDatabase(url, pool_size)
    else:
        path = sqlite_path(url)
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        db = SqliteDatabase(path, pool_size)
    database.initialize(db)
    return db


async def migrate(db: Database) -> list[str]:
    """Apply pending migrations; answers the names applied. One connection serves the
    whole run, for the transactions Peewee's migrator opens."""
    token = _migrating.set(True)
    try:
        with connections.limited(_MIGRATION_SECONDS):
            async with unit(db.writes):
                if isinstance(db, PostgresqlDatabase):
                    await execute(
                        "SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,), writes=True
                    )
                    try:
                        return await run(lambda: list(Runner(db, str(MIGRATIONS)).up()))
                    finally:
                        await execute(
                            "SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,), writes=True
                        )
                return await run(lambda: list(Runner(db, str(MIGRATIONS)).up()))
    finally:
        _migrating.reset(token)


def atomic(*guards: Guard) -> Any:
    """`async with atomic(*guards):` a write transaction (a savepoint when nested), its
    integrity errors answered as `guards` declare (see `integrity`)."""
    db = _store()
    block = connections.transaction(db.writes, db.begin_statement, db.system)
    return guarded(guards, block) if guards else block


# How many times a transaction that conflicted with a concurrent one is tried in all.
ATTEMPTS = 5


async def retried(
    transaction: Callable[[], Awaitable[T]],
    conflicts: tuple[type[BaseException], ...] = (ConcurrentChange,),
) -> T:
    """Run `transaction` (a whole transaction), again after one of `conflicts` (on
    PostgreSQL a deadlock or serialization failure rolls one of two transactions back),
    waiting a little longer each time."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await transaction()
        except conflicts as error:
            if attempt == ATTEMPTS:
                raise
            log.info("retrying after a conflict (attempt %d): %r", attempt, error)
            await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
    raise AssertionError("unreachable")


class Sql:
    """A hand-written statement for a hot path, with `?` placeholders: rendered once per
    database class (PostgreSQL takes `%s`) and run without building a Peewee query, whose
    rendering costs several times what a small indexed query does. Column values come
    back as the driver gives them: convert with the model field's `python_value`.

    `bounded`: the rows it examines are bounded by the request (a lookup by key, or a
    keyset page served by an index in its order), so it may run on the event loop's
    thread (the loop rule, in this module's docstring)."""

    def __init__(self, text: str, *, bounded: bool = False) -> None:
        self.text = text
        self.bounded = bounded
        self._rendered: dict[type, str] = {}

    def render(self, db: Database) -> str:
        rendered = self._rendered.get(type(db))
        if rendered is None:
            rendered = self._rendered[type(db)] = self.text.replace("?", db.param)
        return rendered


async def fetch(statement: Sql, params: Sequence[Any]) -> list[Any]:
    """The rows of a read (on the event loop's thread when the loop rule allows)."""
    sql = statement.render(_store())
    return (await execute(sql, params, writes=False, bounded=statement.bounded)).rows


async def write(statement: Sql, params: Sequence[Any]) -> Result:
    """A written-out write: on the unit's connection, or in one of its own."""
    return await execute(statement.render(_store()), params, writes=True)


# Rows a step of `delete_older` removes.
DELETE_STEP = 2000


async def delete_older(table: str, key: str, column: str, before: Any) -> int:
    """Delete the rows of `table` whose `column` (indexed) is below `before`, DELETE_STEP
    rows a statement (picked by the columns `key`, its primary key), so no statement's
    cost grows with the table; how many."""
    statement = Sql(
        f"DELETE FROM {table} WHERE ({key}) IN "
        f"(SELECT {key} FROM {table} WHERE {column} < ? LIMIT ?)"
    )
    deleted = 0
    while True:
        done = (await write(statement, (before, DELETE_STEP))).rowcount
        deleted += done
        if done < DELETE_STEP:
            return deleted


async def read_page(statement: Sql, params: Sequence[Any], pace: Pace) -> list[Any]:
    """The rows of one page of a long read (on the loop's thread a slice at a time, when
    the loop rule allows and `pace` says the rows come quickly)."""
    sql = statement.render(_store())
    return (await execute(sql, params, writes=False, bounded=statement.bounded, pace=pace)).rows


class Overlapped:
    """One statement at a time running on the current unit's connection (such as a
    transaction's) while the task goes on: `await start(...)`, then `await result()` for
    its rows. Leaving the block waits for a statement still running, whatever happened."""

    def __init__(self) -> None:
        conn = held()
        assert conn is not None, "Overlapped runs inside a unit of work"
        self._connection = conn
        self._running: asyncio.Future[Result] | None = None

    async def start(self, statement: Sql, params: Sequence[Any]) -> None:
        assert self._running is None, "one statement at a time"
        sql = statement.render(_store())
        # The statement's own task does not hold the unit: it is given the connection.
        self._running = asyncio.ensure_future(
            execute(sql, params, writes=True, conn=self._connection)
        )
        # A task first runs when its creator yields: one turn of the loop hands the
        # statement to the driver, so the database works while the caller goes on.
        await asyncio.sleep(0)

    async def result(self) -> list[Any]:
        """The rows of the statement started last ([] when none is running)."""
        running, self._running = self._running, None
        return (await running).rows if running is not None else []

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
