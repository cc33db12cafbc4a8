"""Faster connections for pwasyncio's databases, the same API.

- SQLite: a query in one trip to the connection's thread (aiosqlite's cursor API makes
  three); a whole loop of reads can run in that thread (`produce_in_thread`); a small
  indexed read outside a transaction runs on the event loop's own thread, with no trip
  at all (`SqliteDatabase.read`), and so can a long read, a few rows at a time
  (`LoopReader`).
- PostgreSQL: statements through asyncpg's statement cache (one round trip, not two).
- Both: a connection is taken from an existing pool without starting a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import asyncpg
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


def _pool_timeout(timeout: float) -> peewee.OperationalError:
    return peewee.OperationalError(
        f"Timed out acquiring connection from pool (acquire_timeout={timeout})."
    )


class _ReadyPool:
    """Once the pool exists, a connection is taken from it directly. (pwasyncio first
    awaits the pool's creation through asyncio.wait_for, which starts a task, on every
    connection a task takes.) A small read borrows a connection only for itself (`read`)."""

    _pool: Any
    _closing: bool
    _acquire_timeout: float
    _state: Any

    def holds_connection(self) -> bool:
        """Whether the current task holds a connection of the pool (as it does in a
        transaction). Looked up without registering the task with pwasyncio, which
        would add a callback to every task that asks."""
        state = self._state._states.get(id(asyncio.current_task()))
        return state is not None and state.conn is not None

    async def read(self, sql: str, params: Any) -> list[Any]:
        """The rows of a small read. Outside a transaction, on a task that holds no
        connection, the connection goes back to the pool as soon as the rows are in:
        pwasyncio would keep it for the task's whole life, so a pool of 10 would serve at
        most 10 calls at a time, each holding its connection while it answers."""
        if self.holds_connection():
            cursor = await self.aexecute_sql(sql, params)  # type: ignore[attr-defined]
            held: list[Any] = cursor.fetchall()
            return held
        conn = await self._acquire_conn_async()
        try:
            with driver_errors:
                cursor = await conn.execute(sql, params)
        finally:
            await self._release_conn(conn)  # type: ignore[attr-defined]
        rows: list[Any] = cursor.fetchall()
        return rows

    async def _acquire_conn_async(self) -> Any:
        pool = self._pool
        if pool is None or self._closing:
            return await super()._acquire_conn_async()  # type: ignore[misc]
        try:
            with driver_errors:
                conn = await self._pool_acquire(pool)  # type: ignore[attr-defined]
        except TimeoutError:
            raise _pool_timeout(self._acquire_timeout) from None
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


def _loop_connection(path: str) -> sqlite3.Connection:
    """A connection for reads on the event loop's thread. timeout=0: a busy database
    answers at once (in WAL mode a reader waits only in rare moments, such as a
    checkpoint resetting the log, and the loop must never wait); query_only: it never
    writes."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    return conn


def _busy(error: peewee.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


class LoopReader:
    """Reads a query's rows on the event loop's own thread, SLICE_ROWS rows at a time,
    letting the loop serve other calls between slices; on a connection of its own.

    Why not the connection's thread: the GIL lets one thread run Python at a time, and
    sqlite3 releases it at every row, so a read in another thread beside a busy loop
    hands the GIL back and forth (and between cores) hundreds of times a page. Measured
    on the benchmark's export (2 cores): 30% faster alone and twice as fast beside
    other calls, whose latency stayed the same. The cost of reading on the loop is
    that the loop waits for the disk when the rows are not cached: after SLOW_SLICES_MAX
    slices in a row each slower than SLOW_SLICE_SECONDS (a slice of cached rows takes
    about 0.1 ms; one slow slice alone may be the process losing its core) the reader
    says it is `slow`, for its caller to read the rest in a connection's thread."""

    SLICE_ROWS = 16
    SLOW_SLICE_SECONDS = 0.005
    SLOW_SLICES_MAX = 3

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._slow_in_a_row = 0

    @property
    def slow(self) -> bool:
        return self._slow_in_a_row >= self.SLOW_SLICES_MAX

    async def rows(self, sql: str, params: Any) -> list[Any] | None:
        """Every row of the query; None when the database was busy (nothing read)."""
        rows: list[Any] = []
        cursor: sqlite3.Cursor | None = None
        try:
            with driver_errors:
                while True:
                    began = time.perf_counter()
                    if cursor is None:
                        cursor = self._conn.execute(sql, params)
                    part = cursor.fetchmany(self.SLICE_ROWS)
                    if time.perf_counter() - began > self.SLOW_SLICE_SECONDS:
                        self._slow_in_a_row += 1
                    else:
                        self._slow_in_a_row = 0
                    rows += part
                    if len(part) < self.SLICE_ROWS:
                        return rows
                    await asyncio.sleep(0)
        except peewee.OperationalError as error:
            if _busy(error):
                return None
            raise
        finally:
            if cursor is not None:
                cursor.close()

    def close(self) -> None:
        self._conn.close()


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
    """pwasyncio's SQLite database, with queries in one thread trip each, and small reads
    on the loop's thread."""

    # The loop thread's own read connection, and the thread it belongs to.
    _inline: sqlite3.Connection | None = None
    _inline_thread: int | None = None

    async def read(self, sql: str, params: Any) -> list[Any]:
        if not self.holds_connection():
            rows = self._read_inline(sql, params)
            if rows is not None:
                return rows
        return await super().read(sql, params)

    def _read_inline(self, sql: str, params: Any) -> list[Any] | None:
        """The rows of a small indexed read, run on the calling (event loop) thread; None
        when it cannot run there and must take the pool's way: an in-memory database
        (each connection would be another database), another thread than the first
        caller's, or a database busy (in WAL mode a reader waits only in rare moments,
        such as a checkpoint resetting the log, and the loop must never wait).

        A round trip to a connection's thread costs several wake-ups of the loop, and
        with many calls in flight a returning thread waits for the interpreter lock: far
        more than an indexed read of a few rows, which is what every authenticated call
        starts with."""
        if not self._reads_on_loop():
            return None
        conn = self._inline
        if conn is None:
            conn = self._open_inline()
        elif self._inline_thread != threading.get_ident():
            return None
        try:
            with driver_errors:
                rows: list[Any] = _run_query(conn, sql, params)[0]
        except peewee.OperationalError as error:
            if _busy(error):
                return None
            raise
        return rows

    def _open_inline(self) -> sqlite3.Connection:
        conn = _loop_connection(self.database)
        self._inline, self._inline_thread = conn, threading.get_ident()
        return conn

    def loop_reader(self) -> LoopReader | None:
        """A reader of its own on the calling (event loop) thread; None where reads
        cannot run there."""
        if not self._reads_on_loop():
            return None
        return LoopReader(_loop_connection(self.database))

    def _reads_on_loop(self) -> bool:
        # An in-memory database cannot: each connection would be another database.
        return self.database != ":memory:" and not self._closing

    async def close_pool(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        await super().close_pool()

    async def _create_pool_async(self) -> _SqlitePool:
        pool = _SqlitePool(
            self.database,
            pool_size=1 if self.database == ":memory:" else self._pool_size,
            on_connect=self._add_conn_hooks,
            timeout=self._timeout,
            **self.connect_params,
        )
        return await pool.initialize()


@functools.lru_cache(maxsize=1024)
def _numbered_placeholders(sql: str) -> str:
    """`%s` placeholders as asyncpg's `$1, $2, ...`, worked out once per statement text
    (pwasyncio runs a regular expression over every statement it sends)."""
    translated: str = AsyncPostgresqlConnection._translate_placeholders(sql)
    return translated


class _PostgresConnection(AsyncPostgresqlConnection):
    """Queries through asyncpg's statement cache: one round trip for a statement run
    before on the connection (pwasyncio prepares every statement anew: two trips)."""

    async def _execute(self, sql: str, params: Any = None) -> CursorAdapter:
        if params:
            sql = _numbered_placeholders(sql)
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


async def _keep_session(conn: Any) -> None:
    """asyncpg resets a connection given back to its pool with a round trip (advisory
    locks, cursors, LISTEN, settings). The server leaves none of these on a connection
    (its one session lock, the migrations', is released by its holder; an open
    transaction is rolled back before release), so the round trip is skipped."""


class PostgresqlDatabase(_ReadyPool, AsyncPostgresqlDatabase):
    """pwasyncio's PostgreSQL database, with asyncpg's statement cache, no reset round
    trip on release, and a few pool connections kept aside for small reads."""

    # Pool connections kept out of the pool for small reads (`read`), on top of its
    # size: the pool's size stays what the rest of the server may hold at once.
    READERS = 5

    def __init__(self, database: str, *, pool_size: int = 10, **kwargs: Any) -> None:
        super().__init__(
            database, pool_size=pool_size + self.READERS, reset=_keep_session, **kwargs
        )
        # At most READERS small reads at once, each on an idle reader connection (taken
        # from the pool the first time).
        self._reader_slots = asyncio.Semaphore(self.READERS)
        self._idle_readers: list[Any] = []

    async def _pool_acquire(self, pool: Any) -> _PostgresConnection:
        return _PostgresConnection(await self._take(pool))

    async def _take(self, pool: Any) -> Any:
        """An asyncpg connection from `pool`. (asyncio.timeout, not wait_for: on Python
        3.11 wait_for runs the acquisition in a task of its own.)"""
        async with asyncio.timeout(self._acquire_timeout):
            return await pool.acquire()

    async def read(self, sql: str, params: Any) -> list[Any]:
        """A small read outside a transaction runs on one of READERS connections kept
        from the pool for them, waiting for one when all are busy: taking a connection
        from asyncpg's pool and giving it back costs more than an indexed read."""
        if self.holds_connection() or self._pool is None:
            return await super().read(sql, params)
        async with self._reader_slots:
            if self._idle_readers:
                conn = self._idle_readers.pop()
            else:
                try:
                    conn = await self._take(self._pool)
                except TimeoutError:
                    raise _pool_timeout(self._acquire_timeout) from None
            # Peewee's error types are put on what escapes, after the connection is seen to.
            with driver_errors:
                try:
                    records, _, _ = await conn._execute(
                        _numbered_placeholders(sql), params, 0, None, return_status=True
                    )
                except asyncpg.PostgresError:
                    await self._put_back(conn)  # the statement failed, not the connection
                    raise
                except BaseException:
                    # Cancelled mid-query, or the connection broke: the pool's release
                    # waits for a cancellation to finish and replaces a dead connection.
                    await self._pool.release(conn)
                    raise
            await self._put_back(conn)
        rows: list[Any] = records
        return rows

    async def _put_back(self, conn: Any) -> None:
        if self._closing:
            # close_pool has taken the idle readers already: this one goes to the pool.
            await self._pool.release(conn)
        else:
            self._idle_readers.append(conn)

    async def close_pool(self) -> None:
        self._closing = True
        idle, self._idle_readers = self._idle_readers, []
        for conn in idle:
            await self._pool.release(conn)
        await super().close_pool()
