"""Tokens' last use, written off the request path: calls note it in memory
(`identity.verify`), and a background task writes what was noted every FLUSH_SECONDS.
Best effort: a flush that fails is tried again at the next, and a crash loses a few
seconds of a hint."""

from __future__ import annotations

import logging

from corrigo.server.ops import background
from corrigo.server.store import identity

FLUSH_SECONDS = 5.0

log = logging.getLogger("corrigo.tokens")


async def _recording() -> None:
    work = background.current()
    while True:
        stopping = await work.pause(FLUSH_SECONDS)
        try:
            await identity.flush_uses()
        except Exception as error:
            log.warning("recording tokens' last use failed (tried again later): %r", error)
        if stopping:
            return


def start_recording() -> None:
    background.current().spawn(_recording(), "token-last-use")
