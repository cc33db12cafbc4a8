"""Connections: which one a statement runs on, for how long it is held, and how long the
statement may run.

The lifecycle of a connection:
- Two pools, each with its own connections and its own admission: `reads` (read-only
  connections for units outside a transaction) and `writes` (transactions). A read never
  waits for a connection that a write holds, so writes piling up behind a lock held
  elsewhere cannot take reads down with them.
- A pool opens connections when they are first needed, up to its size, and keeps the
  idle ones open.
- A unit of work takes one and gives it back when it ends: `unit()` (one statement, or
  one page of a read) or `transaction()` (BEGIN .. COMMIT). Nothing holds a connection
  between units: a stream reads, gives the connection back, then sends.
- Taking one waits at most until the call's deadline (`call_deadline`), and never more
  than ACQUIRE_SECONDS: then UNAVAILABLE, which a client may retry.
- Every statement is bounded (`bound()`): by its call's deadline, or by the statement
  limit (`--statement-timeout` for calls without a deadline; background work sets its
  own with `limited`). When the bound passes, or the call is cancelled, the statement is
  stopped on the database and the unit fails: DEADLINE_EXCEEDED for a bound, the
  cancellation for a cancelled call.
- A unit that ends in an error or a cancellation gives its connection back only once it
  is clean (its statement stopped, its transaction rolled back). That clean-up runs in
  a task of its own, so a second cancellation cannot cut it short.
- A connection that broke (the database went away, a statement was cut mid-way and did
  not settle) is closed, never reused; the next unit opens a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from corrigo.server.api.errors import DeadlineExceeded, Unavailable
from corrigo.server.ops import metrics, tracing
from corrigo.server.store import commits
from corrigo.v1 import errors_pb2

log = logging.getLogger("corrigo.store")

# How long a connection whose statement was stopped may take to be clean again.
SETTLE_SECONDS = 10.0
# The longest a unit waits for a connection when its call has no earlier deadline.
ACQUIRE_SECONDS = 10.0
# The longest one statement of a call without a deadline runs (`--statement-timeout`).
STATEMENT_SECONDS = 30.0

# How long before its call's deadline a unit gives up waiting for a connection.
DEADLINE_MARGIN_SECONDS = 0.05
# When the current call must be answered (time.monotonic(), the event loop's clock), if
# it has a deadline.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "corrigo_call_deadline", default=None
)
# The statement limit of the current task when it is not the server's (background work).
_statement_seconds: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "corrigo_statement_seconds", default=None
)


class _Settings:
    statement_seconds = STATEMENT_SECONDS


def configure(*, statement_seconds: float) -> None:
    """The server's limit for one statement of a call without a deadline."""
    _Settings.statement_seconds = statement_seconds


def statement_limit() -> float:
    """The longest a statement of the current task may run (seconds)."""
    return _statement_seconds.get() or _Settings.statement_seconds


@contextlib.contextmanager
def limited(seconds: float) -> Iterator[None]:
    """Statements in the block (and the tasks it starts) run at most `seconds` each, whatever
    the server's limit: for work the server does on its own behalf."""
    token = _statement_seconds.set(seconds)
    try:
        yield
    finally:
        _statement_seconds.reset(token)


@dataclass(frozen=True)
class Bound:
    """When a statement must have ended (time.monotonic()), and what set that time."""

    at: float
    # True: the call's deadline; False: the statement limit.
    by_call: bool
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Bound:
        """A bound `seconds` from now, for the store's own clean-up."""
        return cls(time.monotonic() + seconds, False, seconds)

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> DeadlineExceeded:
        """The error of a statement stopped at this bound."""
        if self.by_call:
            return DeadlineExceeded(
                "the call's deadline passed before the database answered; the statement was "
                "stopped and its transaction rolled back",
                reason=errors_pb2.DEADLINE_PASSED,
            )
        return DeadlineExceeded(
            f"a statement ran longer than the server's limit of {self.seconds:g} s and was "
            "stopped (--statement-timeout); narrow the request, or call with a deadline",
            reason=errors_pb2.STATEMENT_TIMEOUT,
        )


def bound() -> Bound:
    """The bound of a statement that starts now."""
    seconds = statement_limit()
    limit = time.monotonic() + seconds
    deadline = call_deadline.get()
    if deadline is not None and deadline <= limit:
        return Bound(deadline, True, seconds)
    return Bound(limit, False, seconds)


class ConnectionLost(Unavailable):
    """The connection broke under a statement; the unit's connection is discarded."""

    def __init__(self) -> None:
        super().__init__("the database connection was lost; retry shortly")


@dataclass(frozen=True)
class Result:
    """What a statement answered: its rows, and what a write reports."""

    rows: list[Any]
    rowcount: int = -1
    lastrowid: int | None = None
    columns: Sequence[str] = ()


class Connection(Protocol):
    """A database connection as the pool hands it out."""

    broken: bool

    async def execute(self, sql: str, params: Sequence[Any], bound: Bound) -> Result:
        """Run one statement; stopped on the database when `bound` passes (raising
        `bound.passed()`) or when the awaiting task is cancelled."""

    async def settle(self) -> None:
        """Wait until no statement of this connection is running."""

    def in_transaction(self) -> bool: ...

    def closed(self) -> bool:
        """Whether the connection is known to be gone (its server closed it)."""

    async def close(self) -> None: ...


class Pool:
    """Up to `size` connections opened by `opener`; `slots` bounds how many are out at once
    (idle ones are reused first)."""

    def __init__(self, opener: Callable[[], Awaitable[Connection]], size: int) -> None:
        self._opener = opener
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closed = False
        self.size = size
        self.in_use = 0

    async def acquire(self) -> Connection:
        """A connection for one unit of work: UNAVAILABLE when none can be had before the
        call's deadline, or the database cannot be reached."""
        if self._closed:
            raise Unavailable("the server is shutting down; retry on another replica")
        if self._slots.locked():
            try:
                with metrics.waiting_for_connection():
                    async with asyncio.timeout(_wait_limit()):
                        await self._slots.acquire()
            except TimeoutError:
                raise Unavailable("no database connection is free; retry shortly") from None
        else:
            await self._slots.acquire()  # a free slot: taken without waiting
        self.in_use += 1
        metrics.connection_taken()
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed():
                    return conn
                # Its server closed it while idle (a restart): never handed out again.
                await _closed_quietly(conn)
            async with asyncio.timeout(_wait_limit()):
                return await self._opener()
        except BaseException as error:
            self._put_back()
            if isinstance(error, Unavailable | asyncio.CancelledError):
                raise
            if isinstance(error, TimeoutError | OSError):
                log.warning("cannot open a database connection: %r", error)
                raise Unavailable("the database cannot be reached; retry shortly") from None
            raise

    def release(self, conn: Connection, *, failed: bool) -> None:
        """Give `conn` back. After a failure it is cleaned (or closed) first, in a task of
        its own; a clean connection goes back at once."""
        # A connection left in a transaction (a stray BEGIN) is cleaned like a failed one.
        if not failed and not conn.broken and not self._closed and not conn.in_transaction():
            self._idle.append(conn)
            self._put_back()
            return
        task = asyncio.get_running_loop().create_task(self._cleaned(conn))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _cleaned(self, conn: Connection) -> None:
        try:
            await conn.settle()
            if not conn.broken and conn.in_transaction():
                await conn.execute("ROLLBACK", (), Bound.after(SETTLE_SECONDS))
        except Exception as error:
            log.warning("discarding a database connection that could not be cleaned: %r", error)
            conn.broken = True
        try:
            if conn.broken or self._closed:
                await _closed_quietly(conn)
            else:
                self._idle.append(conn)
        finally:
            self._put_back()

    def _put_back(self) -> None:
        self.in_use -= 1
        metrics.connection_given_back()
        self._slots.release()

    async def close(self) -> None:
        """Close every connection, once the clean-ups in flight are done."""
        self._closed = True
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)
        idle, self._idle = self._idle, []
        for conn in idle:
            await _closed_quietly(conn)


async def _closed_quietly(conn: Connection) -> None:
    try:
        await conn.close()
    except Exception as error:  # a connection that broke may fail to close: it is gone
        log.debug("closing a database connection failed: %r", error)


def _wait_limit() -> float:
    """How long a unit may wait for a connection: until shortly before its call's
    deadline, so that the UNAVAILABLE reaches the client before the deadline does."""
    deadline = call_deadline.get()
    if deadline is None:
        return ACQUIRE_SECONDS
    left = deadline - time.monotonic()
    return max(0.0, min(ACQUIRE_SECONDS, left - max(DEADLINE_MARGIN_SECONDS, left / 10)))


# The connection the current task's unit of work holds, and its savepoint depth.
_held: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("corrigo_held", default=None)


@dataclass
class _Held:
    conn: Connection
    in_transaction: bool
    # The task of the unit: a task it starts inherits the context, not the connection.
    # Weakly held: the context outlives the unit in timers (a statement's bound, kept by
    # the loop until it would have fired), and the task would keep its result with it.
    owner: weakref.ref[asyncio.Task[Any]] | None
    savepoints: int = 0


def _owner() -> weakref.ref[asyncio.Task[Any]] | None:
    task = asyncio.current_task()
    return None if task is None else weakref.ref(task)


def _task(owner: weakref.ref[asyncio.Task[Any]] | None) -> asyncio.Task[Any] | None:
    return None if owner is None else owner()


def _current() -> _Held | None:
    current = _held.get()
    if current is None or _task(current.owner) is not asyncio.current_task():
        return None
    return current


def held() -> Connection | None:
    """The connection of the current task's unit of work, if it is in one."""
    current = _current()
    return current.conn if current is not None else None


@contextlib.asynccontextmanager
async def unit(pool: Pool) -> AsyncIterator[Connection]:
    """A connection for the block (the enclosing unit's, inside one)."""
    current = _current()
    if current is not None:
        yield current.conn
        return
    conn = await pool.acquire()
    token = _held.set(_Held(conn, in_transaction=False, owner=_owner()))
    failed = True
    try:
        yield conn
        failed = False
    finally:
        _held.reset(token)
        pool.release(conn, failed=failed)


@contextlib.asynccontextmanager
async def transaction(pool: Pool, begin: str, system: str) -> AsyncIterator[Connection]:
    """A transaction for the block, begun with `begin`: committed when the block ends,
    rolled back when it raises or is cancelled. Inside another, a savepoint. `system`
    names the database in its span."""
    current = _current()
    if current is not None and current.in_transaction:
        async with _savepoint(current):
            yield current.conn
        return
    if current is not None:
        raise RuntimeError("a transaction cannot start inside a unit that holds a read")
    with tracing.database_span("transaction", {"db.system": system}):
        conn = await pool.acquire()
        token = _held.set(_Held(conn, in_transaction=True, owner=_owner()))
        failed = True
        try:
            await conn.execute(begin, (), bound())
            yield conn
            await conn.execute("COMMIT", (), bound())
            failed = False
            commits.committed()
        except BaseException as error:
            metrics.transaction_rolled_back(error)
            raise
        finally:
            _held.reset(token)
            pool.release(conn, failed=failed)


@contextlib.asynccontextmanager
async def _savepoint(current: _Held) -> AsyncIterator[None]:
    current.savepoints += 1
    name = f"s{current.savepoints}"
    await current.conn.execute(f"SAVEPOINT {name}", (), bound())
    try:
        yield
    except BaseException:
        # A cancelled task's savepoint is left to the outer transaction's rollback.
        with contextlib.suppress(BaseException):
            await current.conn.execute(f"ROLLBACK TO SAVEPOINT {name}", (), bound())
            await current.conn.execute(f"RELEASE SAVEPOINT {name}", (), bound())
        raise
    else:
        await current.conn.execute(f"RELEASE SAVEPOINT {name}", (), bound())
    finally:
        current.savepoints -= 1
