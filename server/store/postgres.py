"""PostgreSQL through asyncpg's public connection API: statements run on the event loop,
prepared once per connection by asyncpg's statement cache."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import peewee

from corrigo.server.api.errors import ConcurrentChange, StorageFull, Unavailable, unstorable_value
from corrigo.server.store.connections import ConnectionLost, Result, log
from corrigo.server.store.integrity import Kind, Violation, postgres_columns

# Errors that leave the connection unusable: it is discarded.
_CONNECTION_ERRORS = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    OSError,
)
_PLACEHOLDER = re.compile(r"%s")
# How long a connection whose statement was cancelled may take to be usable again.
SETTLE_SECONDS = 10.0
# Statements whose rows are answered (the rest answer a command status with a count).
_ROWS_HEADS = ("SELECT", "WITH", "VALUES", "SHOW")


def translated(error: Exception) -> Exception:
    """The error a caller can act on for an asyncpg error (peewee's types for the rest, so
    the store catches one family whatever the database)."""
    if isinstance(error, asyncpg.exceptions.DiskFullError):
        log.warning("the database's storage is full: %s", error)
        return StorageFull("the database's storage is full; free space and retry")
    if isinstance(error, asyncpg.exceptions.IntegrityConstraintViolationError):
        return _violation(error)
    if isinstance(error, asyncpg.exceptions.DataError):
        return unstorable_value()
    if isinstance(
        error,
        asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.TooManyConnectionsError
        | asyncpg.exceptions.InsufficientResourcesError,
    ):
        log.warning("the database refuses connections: %s", error)
        return Unavailable("the database is starting, stopping or busy; retry shortly")
    if isinstance(error, asyncpg.exceptions.TransactionRollbackError):
        log.info("a transaction was rolled back by a concurrent one: %s", error)
        return ConcurrentChange()
    return peewee.DatabaseError(*error.args)


def _violation(error: asyncpg.exceptions.IntegrityConstraintViolationError) -> Violation:
    """The integrity error with its kind, and the constraint, table and key columns
    PostgreSQL names."""
    kind = Kind.OTHER
    if isinstance(error, asyncpg.exceptions.UniqueViolationError):
        kind = Kind.UNIQUE
    elif isinstance(error, asyncpg.exceptions.ForeignKeyViolationError):
        kind = Kind.FOREIGN_KEY
    return Violation(
        kind,
        *error.args,
        table=error.table_name,
        columns=postgres_columns(error.detail),
        constraint=error.constraint_name,
    )


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """Peewee's `%s` placeholders as asyncpg's `$1, $2, ...`."""
    counter = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


@functools.lru_cache(maxsize=4096)
def _returns_rows(sql: str) -> bool:
    return sql.lstrip()[:6].upper().startswith(_ROWS_HEADS) or " RETURNING " in sql


def _rowcount(status: str) -> int:
    # A command status ends with its row count: "UPDATE 3", "INSERT 0 3", "DELETE 0".
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


class PostgresConnection:
    """A pool connection. A statement in a transaction runs to its end even when its
    caller is cancelled, as on SQLite (`settle` waits for it), so the rollback that follows
    never races a cancel request. Outside one (a single read or write) a cancelled
    statement is cancelled on the server by asyncpg, and `settle` waits until that is
    acknowledged: sparing every statement a task of its own is worth 15% of a small read."""

    broken = False

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._running: asyncio.Future[Result] | None = None
        # A statement outside a transaction was cancelled mid-way.
        self._cut = False

    @classmethod
    async def open(cls, dsn: str) -> PostgresConnection:
        try:
            return cls(await asyncpg.connect(dsn))
        except (*_CONNECTION_ERRORS, asyncpg.exceptions.PostgresError) as error:
            if isinstance(error, asyncpg.exceptions.InvalidCatalogNameError):
                raise  # a database that does not exist is a configuration error
            log.warning("cannot connect to PostgreSQL: %r", error)
            raise Unavailable("the database cannot be reached; retry shortly") from None

    async def execute(self, sql: str, params: Sequence[Any]) -> Result:
        if not self._conn.is_in_transaction():
            try:
                return await self._run(sql, params)
            except asyncio.CancelledError:
                self._cut = True
                raise
        running = asyncio.ensure_future(self._run(sql, params))
        self._running = running
        return await asyncio.shield(running)

    async def _run(self, sql: str, params: Sequence[Any]) -> Result:
        if params:
            sql = numbered(sql)
        try:
            if _returns_rows(sql):
                records = await self._conn.fetch(sql, *params)
                columns = list(records[0].keys()) if records else []
                return Result(records, len(records), None, columns)
            status = await self._conn.execute(sql, *params)
            return Result([], _rowcount(status))
        except _CONNECTION_ERRORS as error:
            self.broken = True
            log.warning("lost a PostgreSQL connection: %r", error)
            raise ConnectionLost() from None
        except asyncpg.exceptions.PostgresError as error:
            raise translated(error) from None

    async def settle(self) -> None:
        running = self._running
        if running is not None and not running.done():
            await asyncio.wait([running])
        if running is not None and running.done() and not running.cancelled():
            running.exception()  # retrieved: its caller was cancelled, or saw it
        if self._cut:
            self._cut = False
            try:
                # asyncpg runs the next statement once the server acknowledged the cancel.
                async with asyncio.timeout(SETTLE_SECONDS):
                    await self._conn.execute("SELECT 1")
            except (TimeoutError, *_CONNECTION_ERRORS, asyncpg.exceptions.PostgresError):
                self.broken = True

    def in_transaction(self) -> bool:
        in_transaction: bool = self._conn.is_in_transaction()
        return in_transaction

    def closed(self) -> bool:
        closed: bool = self._conn.is_closed()
        return closed

    async def close(self) -> None:
        if self.broken or self._conn.is_closed():
            self._conn.terminate()
            return
        try:
            await asyncio.wait_for(self._conn.close(), timeout=2)
        except (TimeoutError, *_CONNECTION_ERRORS):
            self._conn.terminate()
