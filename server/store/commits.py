"""Commits, as a wake-up for the followers of datasets (`follow`): the change positions are
the truth, this only says when to look again. This process's commits count here as they
happen (`committed`); other processes' are heard (`heard`: PostgreSQL's notices,
`commit_notices`) or found by the followers' polling."""

from __future__ import annotations

import asyncio
import contextlib


class _Signal:
    """A count of events, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        # Set, then dropped, at each event: the tasks waiting on it wake.
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def happened(self) -> None:
        self.count += 1
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def after(self, seen: int, seconds: float) -> None:
        """Return once the count passed `seen` (at once if it has), or after `seconds`."""
        if self.count != seen:
            return
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            self._event, self._loop = asyncio.Event(), loop
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()


# Commits of this process and of others heard: what followers wait for.
_changes = _Signal()
# Commits of this process alone: what `commit_notices` tells the other processes.
_local = _Signal()


def committed() -> None:
    """A write of this process committed (called by the store)."""
    _local.happened()
    _changes.happened()


def heard() -> None:
    """Another process said it committed a write."""
    _changes.happened()


def seen() -> int:
    """The commits so far: pass it to `after` once what they wrote has been read."""
    return _changes.count


async def after(seen: int, seconds: float) -> None:
    """Return once a commit follows the `seen` ones (at once if one already has), or
    after `seconds`."""
    await _changes.after(seen, seconds)


def local_seen() -> int:
    return _local.count


async def after_local(seen: int, seconds: float) -> None:
    """As `after`, for this process's own commits alone."""
    await _local.after(seen, seconds)
