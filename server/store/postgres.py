"""PostgreSQL through asyncpg's public connection API: statements run on the event loop,
prepared once per connection by asyncpg's statement cache."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import asyncpg
import peewee

from corrigo.server.api.errors import ConcurrentChange, StorageFull, Unavailable, unstorable_value
from corrigo.server.store.connections import SETTLE_SECONDS, Bound, ConnectionLost, Result, log
from corrigo.server.store.integrity import Kind, Violation, postgres_columns

# Errors that leave the connection unusable: it is discarded.
_CONNECTION_ERRORS = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    OSError,
)
_PLACEHOLDER = re.compile(r"%s")
# The longest a transaction may sit idle on the server (its process frozen or gone)
# before PostgreSQL ends it and frees its locks; the store never pauses that long.
IDLE_IN_TRANSACTION_SECONDS = 60.0
# Prepared statements kept per connection (the least recently used beyond are closed).
PREPARED_PER_CONNECTION = 256


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


def _rowcount(status: str) -> int:
    # A command status ends with its row count: "UPDATE 3", "INSERT 0 3", "DELETE 0".
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


class PostgresConnection:
    """A pool connection. A statement runs with asyncpg's timeout set to the time left to
    its bound: when that passes, or its task is cancelled, asyncpg asks the server to
    cancel it, and `settle` waits until the server has acknowledged (the next statement
    then starts on a connection that runs nothing)."""

    broken = False

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        # A statement was stopped mid-way: the connection is clean once the server says so.
        self._cut = False
        # Numbers the names of the statements this connection prepares.
        self._names = itertools.count(1)
        # Each statement's preparation and its columns, most recently used last.
        self._prepared: OrderedDict[
            str, tuple[asyncpg.prepared_stmt.PreparedStatement, list[str]]
        ] = OrderedDict()

    @classmethod
    async def open(cls, dsn: str, *, read_only: bool) -> PostgresConnection:
        settings = {
            # A backend whose client vanished (a killed server process) notices within a
            # second and stops, instead of waiting on a lock for nobody.
            "client_connection_check_interval": "1000",
            # A transaction left open by a process that froze holds no lock for long.
            "idle_in_transaction_session_timeout": str(int(IDLE_IN_TRANSACTION_SECONDS * 1000)),
        }
        if read_only:
            # Reads never write, and cannot take the row locks writes wait for.
            settings["default_transaction_read_only"] = "on"
        try:
            # Statements are prepared and kept here (`_run`), not in asyncpg's cache.
            conn = await asyncpg.connect(dsn, server_settings=settings, statement_cache_size=0)
            return cls(conn)
        except (*_CONNECTION_ERRORS, asyncpg.exceptions.PostgresError) as error:
            if isinstance(error, asyncpg.exceptions.InvalidCatalogNameError):
                raise  # a database that does not exist is a configuration error
            log.warning("cannot connect to PostgreSQL: %r", error)
            raise Unavailable("the database cannot be reached; retry shortly") from None

    async def execute(self, sql: str, params: Sequence[Any], bound: Bound) -> Result:
        left = bound.left()
        if left <= 0:
            raise bound.passed()
        if params:
            sql = numbered(sql)
        try:
            try:
                return await self._run(sql, params, bound)
            except (
                asyncpg.exceptions.InvalidCachedStatementError,
                asyncpg.exceptions.OutdatedSchemaCacheError,
            ):
                # A migration changed a table under a kept statement: prepared anew, once,
                # where nothing else was done yet.
                self._prepared.pop(sql, None)
                if self._conn.is_in_transaction():
                    raise
                return await self._run(sql, params, bound)
        except asyncio.CancelledError:
            self._cut = True
            raise
        except TimeoutError:
            self._cut = True
            raise bound.passed() from None
        except asyncpg.exceptions.QueryCanceledError:
            # The server's own limits (an operator's statement_timeout or lock_timeout).
            raise bound.passed() from None
        except (*_CONNECTION_ERRORS, asyncpg.exceptions.InterfaceError) as error:
            # asyncpg raises InterfaceError for a misuse of a healthy connection too (a
            # wrong argument count): that is a bug of ours, not an outage.
            if not isinstance(error, _CONNECTION_ERRORS) and not self._conn.is_closed():
                raise
            self.broken = True
            log.warning("lost a PostgreSQL connection: %r", error)
            raise ConnectionLost() from None
        except asyncpg.exceptions.PostgresError as error:
            raise translated(error) from None

    async def _run(self, sql: str, params: Sequence[Any], bound: Bound) -> Result:
        """The statement's rows and its row count, both as the statement itself reports
        them (its columns, and its command status), whatever kind of statement it is."""
        kept = self._prepared.get(sql)
        if kept is None:
            # Named: asyncpg prepares statements unnamed when its own cache is off, and the
            # server parses and plans an unnamed statement again at every execution.
            name = f"corrigo_{next(self._names)}"
            statement = await self._conn.prepare(sql, name=name, timeout=bound.left())
            kept = statement, [attribute.name for attribute in statement.get_attributes()]
            self._prepared[sql] = kept
            if len(self._prepared) > PREPARED_PER_CONNECTION:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(sql)
        statement, columns = kept
        left = bound.left()
        if left <= 0:
            raise TimeoutError
        records = await statement.fetch(*params, timeout=left)
        return Result(records, _rowcount(statement.get_statusmsg()), None, columns)

    async def settle(self) -> None:
        if not self._cut:
            return
        self._cut = False
        try:
            # asyncpg sends the next statement once the server acknowledged the cancel; in
            # a transaction that statement must be the rollback (nothing else is accepted).
            async with asyncio.timeout(SETTLE_SECONDS):
                if self._conn.is_in_transaction():
                    await self._conn.execute("ROLLBACK")
                else:
                    await self._conn.execute("SELECT 1")
        except (
            TimeoutError,
            *_CONNECTION_ERRORS,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.PostgresError,
        ):
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
        except (TimeoutError, *_CONNECTION_ERRORS, asyncpg.exceptions.InterfaceError):
            self._conn.terminate()
