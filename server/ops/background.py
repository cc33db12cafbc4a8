"""Work the server does besides answering calls, tracked so shutdown can end it.

Handlers start background work with `spawn`; the server opens a `Background` when it
starts (`open`) and closes it when it stops (`close`). Closing sets `stopping` (work
checks it between its steps and leaves the rest to the next server), waits up to a
grace period for the tasks to end, then cancels those still running and awaits them,
so no task outlives the database pool.

Background work has no call and so no deadline: each of its statements runs at most
STATEMENT_SECONDS, and work that meets that limit fails its step, which is retried later
as the work's own rules say.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from corrigo.server.store import connections

log = logging.getLogger("corrigo.background")

# The longest one statement of background work runs.
STATEMENT_SECONDS = 60.0


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._draining = False

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def draining(self) -> bool:
        """Whether the server is shutting down (its calls are being given their grace):
        calls that would run on without end (follow streams) end at their next step."""
        return self._draining

    def drain(self) -> None:
        self._draining = True

    @property
    def running(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> bool:
        """Run `work` as a tracked task; False (and `work` is dropped) once stopping."""
        if self.stopping:
            work.close()
            return False
        # A fresh context: the task must not inherit the spawning call's (its caller,
        # its database connection state).
        task = asyncio.get_running_loop().create_task(
            self._logged(work, name), name=name, context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            with connections.limited(STATEMENT_SECONDS):
                await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed", name)

    def every(self, seconds: float, work: Callable[[], Awaitable[object]], name: str) -> None:
        """Run `work` now and then every `seconds` until stopping (a sweep); a round that
        fails is logged, and the next one runs all the same."""

        async def rounds() -> None:
            while not self.stopping:
                try:
                    await work()
                except Exception:
                    log.exception("%s: a round failed", name)
                if await self.pause(seconds):
                    return

        self.spawn(rounds(), name)

    async def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once when stopping; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self.stopping

    async def close(self, grace: float) -> None:
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            log.warning("cancelling background task %s after %.1fs", task.get_name(), grace)
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


_current: Background | None = None


def open_background() -> Background:
    """A new Background for a starting server; `current()` answers it."""
    global _current
    _current = Background()
    return _current


def current() -> Background:
    if _current is None:
        raise RuntimeError("no server is running: background work has no owner")
    return _current
