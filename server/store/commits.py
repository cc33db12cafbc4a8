"""This process's commits, as a wake-up for the followers of datasets (`follow`): the
change positions are the truth, this only says when to look again. Commits of other
processes are found by polling."""

from __future__ import annotations

import asyncio
import contextlib


class _Commits:
    count = 0
    # Set, then dropped, at each commit: the followers waiting on it wake.
    event: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None


def committed() -> None:
    """A write of this process committed (called by the store)."""
    _Commits.count += 1
    event, _Commits.event = _Commits.event, None
    if event is not None:
        event.set()


def seen() -> int:
    """The commits so far: pass it to `after` once what they wrote has been read."""
    return _Commits.count


async def after(seen: int, seconds: float) -> None:
    """Return once a commit follows the `seen` ones (at once if one already has), or
    after `seconds`."""
    if _Commits.count != seen:
        return
    loop = asyncio.get_running_loop()
    if _Commits.event is None or _Commits.loop is not loop:
        _Commits.event, _Commits.loop = asyncio.Event(), loop
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await _Commits.event.wait()
