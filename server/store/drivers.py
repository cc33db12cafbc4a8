"""Faster connections for pwasyncio's databases, the same API.

- SQLite: a query in one trip to the connection's thread (aiosqlite's cursor API makes
  three); a whole loop of reads can run in that thread (`produce_in_thread`).
- PostgreSQL: statements through asyncpg's statement cache (one round trip, not two).
- Both: a connection is taken from an existing pool without starting a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import peewee
from peewee import __exception_wrapper__ as driver_errors  # type: ignore[attr-defined]
from playhouse.pwasyncio import (
    AsyncPostgresqlConnection,
    AsyncPostgresqlDatabase,
    AsyncSqliteConnection,
    AsyncSqliteDatabase,
    AsyncSqlitePool,
    CursorAdapter,
)

T = TypeVar("T")


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
            with driver_errors:
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
