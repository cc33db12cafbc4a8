"""SQLite through the standard library's `sqlite3`: pool connections, each on a thread
of its own, and reads on the event loop's own thread.

A read of a few indexed rows takes less time than handing it to another thread and
back, so small reads and export pages outside a transaction run on the loop's thread
(`LoopReads`) on connections that never wait: a busy database answers at once (in WAL
mode a reader waits only in rare moments, such as a checkpoint resetting the log), and
the read then goes to a pool connection's thread instead.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import peewee

from corrigo.server.api.errors import StorageFull, Unavailable, unstorable_value
from corrigo.server.store.connections import Bound, Result, log
from corrigo.server.store.integrity import Kind, Violation, sqlite_unique

# WAL with synchronous=NORMAL: a committed transaction survives a process crash.
PRAGMAS = (("journal_mode", "wal"), ("synchronous", "normal"), ("foreign_keys", "1"))
# The longest a statement waits for another writer's lock before it checks again whether
# its bound passed or its call was cancelled.
BUSY_SLICE_SECONDS = 0.05


def translated(error: sqlite3.Error) -> Exception:
    """The error a caller can act on for a `sqlite3` error (peewee's types for the rest, so
    the store catches one family whatever the database)."""
    code = (error.sqlite_errorcode or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        log.warning("the database's disk is full: %s", error)
        return StorageFull("the database's disk is full; free space and retry")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return Unavailable("the database is busy; retry shortly")
    if isinstance(error, sqlite3.IntegrityError):
        return _violation(error)
    if isinstance(error, sqlite3.DataError):
        return unstorable_value()
    if isinstance(error, sqlite3.OperationalError):
        return peewee.OperationalError(*error.args)
    return peewee.DatabaseError(*error.args)


def _violation(error: sqlite3.IntegrityError) -> Violation:
    """The integrity error with its kind (SQLite's extended code) and, for a unique
    constraint, the table and columns its message names."""
    code = error.sqlite_errorcode
    if code in (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
        table, columns = sqlite_unique(str(error))
        return Violation(Kind.UNIQUE, *error.args, table=table, columns=columns)
    if code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
        return Violation(Kind.FOREIGN_KEY, *error.args)
    return Violation(Kind.OTHER, *error.args)


def _connect(path: str, read_only: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    for name, value in PRAGMAS:
        conn.execute(f"PRAGMA {name} = {value}")
    if read_only:
        conn.execute("PRAGMA query_only = 1")
    return conn


def _run(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Result:
    cursor = conn.execute(sql, params)
    try:
        rows = cursor.fetchall()
        columns = [d[0] for d in cursor.description] if cursor.description else ()
        return Result(rows, cursor.rowcount, cursor.lastrowid, columns)
    finally:
        cursor.close()


class _Stopped(Exception):
    """The statement's bound passed, or its call was cancelled, while it waited."""


class SqliteConnection:
    """A pool connection; its statements run one at a time on its own thread.

    SQLite's busy handler ignores `interrupt()`, so a statement waiting for another
    writer's lock waits in slices of at most BUSY_SLICE_SECONDS, checking between them
    whether its bound passed or its call was cancelled; a statement that is running is
    stopped by `interrupt()`.
    """

    broken = False

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread
        self._running: Future[Any] | None = None
        # Set when the awaiting task was cancelled: the thread stops waiting for locks.
        self._stop = threading.Event()
        # The busy timeout in force (milliseconds); only the connection's thread sets it.
        self._busy_ms = 0

    @classmethod
    async def open(cls, path: str, *, read_only: bool) -> SqliteConnection:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corrigo-sqlite")
        try:
            conn = await asyncio.wrap_future(thread.submit(_connect, path, read_only))
        except BaseException as error:
            thread.shutdown(wait=False)
            if isinstance(error, sqlite3.Error):
                raise translated(error) from None
            raise
        return cls(conn, thread)

    async def execute(self, sql: str, params: Sequence[Any], bound: Bound) -> Result:
        if bound.left() <= 0:
            raise bound.passed()
        self._stop.clear()
        loop = asyncio.get_running_loop()
        timer = loop.call_at(bound.at, self._conn.interrupt)
        work = self._thread.submit(self._bounded, sql, params, bound.at)
        self._running = work
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            self._stop.set()
            self._conn.interrupt()
            raise
        except _Stopped:
            raise bound.passed() from None
        except sqlite3.Error as error:
            if (error.sqlite_errorcode or 0) & 0xFF == sqlite3.SQLITE_INTERRUPT:
                raise bound.passed() from None
            raise translated(error) from None
        finally:
            timer.cancel()

    def _bounded(self, sql: str, params: Sequence[Any], until: float) -> Result:
        """On the connection's thread: the statement, waiting for locks until `until`."""
        while True:
            left = until - time.monotonic()
            if left <= 0 or self._stop.is_set():
                raise _Stopped()
            busy_ms = max(1, int(min(left, BUSY_SLICE_SECONDS) * 1000))
            if busy_ms != self._busy_ms:
                self._conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
                self._busy_ms = busy_ms
            try:
                return _run(self._conn, sql, params)
            except sqlite3.OperationalError as error:
                # A statement that met a lock did nothing: it is run again.
                if (error.sqlite_errorcode or 0) & 0xFF != sqlite3.SQLITE_BUSY:
                    raise

    async def settle(self) -> None:
        running = self._running
        if running is not None and not running.done():
            waited = asyncio.wrap_future(running)
            await asyncio.wait([waited])
            # Its failure (such as _Stopped, once its caller was cancelled) was its
            # caller's to report: taken here, it is not logged as never retrieved.
            if not waited.cancelled():
                waited.exception()

    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def closed(self) -> bool:
        return False

    async def close(self) -> None:
        await self.settle()
        await asyncio.wrap_future(self._thread.submit(self._conn.close))
        self._thread.shutdown(wait=False)


class Pace:
    """How quickly one reader's pages come from the loop's thread. Rows not in the page
    cache make the loop wait for the disk: after SLOW_SLICES slices in a row slower than
    SLOW_SLICE_SECONDS (one alone may be the process losing its core) the reader's
    later pages are read in a pool connection's thread."""

    SLOW_SLICE_SECONDS = 0.005
    SLOW_SLICES = 3

    def __init__(self) -> None:
        self.slow_in_a_row = 0

    @property
    def slow(self) -> bool:
        return self.slow_in_a_row >= self.SLOW_SLICES

    def measured(self, seconds: float) -> None:
        self.slow_in_a_row = self.slow_in_a_row + 1 if seconds > self.SLOW_SLICE_SECONDS else 0


class LoopReads:
    """Reads on the event loop's thread, on read-only connections with no busy timeout.
    A page is read SLICE_ROWS rows at a time, the loop serving other calls between
    slices, on a connection of its own (a cursor open across slices holds its snapshot:
    a shared connection would answer other reads from it)."""

    SLICE_ROWS = 16
    # Page readers kept open; more pages at once are read in pool connections' threads.
    PAGE_CONNECTIONS = 4

    def __init__(self, path: str) -> None:
        self._path = path
        self._thread: int | None = None
        self._small: sqlite3.Connection | None = None
        self._idle_pages: list[sqlite3.Connection] = []
        self._pages_out = 0
        self._closed = False

    def _usable(self) -> bool:
        """Only on the thread of the first read (the event loop's), and not for an
        in-memory database (each connection would be another database)."""
        if self._closed or self._path == ":memory:":
            return False
        if self._thread is None:
            self._thread = threading.get_ident()
        return self._thread == threading.get_ident()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
        return conn

    async def read(self, sql: str, params: Sequence[Any], pace: Pace | None) -> list[Any] | None:
        """The rows of a read: at once (a small read), or a slice at a time on a connection
        of its own while `pace` says they come quickly (a page); None when it must be
        read elsewhere."""
        if not self._usable():
            return None
        if pace is None:
            return self._small_read(sql, params)
        if self._idle_pages:
            conn = self._idle_pages.pop()
        elif self._pages_out < self.PAGE_CONNECTIONS:
            conn = self._open()
        else:
            return None
        self._pages_out += 1
        try:
            return await self._sliced(conn, sql, params, pace)
        finally:
            self._pages_out -= 1
            if self._closed:
                conn.close()
            else:
                self._idle_pages.append(conn)

    def _small_read(self, sql: str, params: Sequence[Any]) -> list[Any] | None:
        if self._small is None:
            self._small = self._open()
        try:
            return _run(self._small, sql, params).rows
        except sqlite3.Error as error:
            _raise_unless_busy(error)
            return None

    async def _sliced(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any], pace: Pace
    ) -> list[Any] | None:
        rows: list[Any] = []
        cursor: sqlite3.Cursor | None = None
        try:
            while True:
                began = time.perf_counter()
                if cursor is None:
                    cursor = conn.execute(sql, params)
                part = cursor.fetchmany(self.SLICE_ROWS)
                pace.measured(time.perf_counter() - began)
                rows += part
                if len(part) < self.SLICE_ROWS:
                    return rows
                await asyncio.sleep(0)
        except sqlite3.Error as error:
            _raise_unless_busy(error)
            return None
        finally:
            if cursor is not None:
                cursor.close()

    def close(self) -> None:
        self._closed = True
        for conn in [*self._idle_pages, *([self._small] if self._small else [])]:
            conn.close()
        self._idle_pages, self._small = [], None


def _raise_unless_busy(error: sqlite3.Error) -> None:
    problem = translated(error)
    if not isinstance(problem, Unavailable):
        raise problem from None
