"""Request ids older than a day are forgotten (`store.request_ids`), by a background task
every SWEEP_SECONDS; a sweep that fails is tried again at the next."""

from __future__ import annotations

import logging

from corrigo.server.ops import background
from corrigo.server.store import request_ids

SWEEP_SECONDS = 3600.0

log = logging.getLogger("corrigo.request_ids")


async def _sweeping() -> None:
    work = background.current()
    while True:
        try:
            swept = await request_ids.sweep()
            if swept:
                log.info("forgot %d request ids older than a day", swept)
        except Exception as error:
            log.warning("sweeping request ids failed (tried again later): %r", error)
        if await work.pause(SWEEP_SECONDS):
            return


def start_sweeping() -> None:
    background.current().spawn(_sweeping(), "request-id-sweeper")
