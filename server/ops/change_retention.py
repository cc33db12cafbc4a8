"""Deletes are kept as change positions (`comment_removed`, `labelling_removed`) for
`--change-retention`, for follow streams (`follow`), then forgotten by a background sweep
every SWEEP_SECONDS, a bounded step at a time (`changes.forget_removed`); a sweep that
fails is tried again at the next."""

from __future__ import annotations

import datetime
import logging

from corrigo.server.ops import background
from corrigo.server.store import changes
from corrigo.server.store.database import utcnow

SWEEP_SECONDS = 300.0

log = logging.getLogger("corrigo.changes")


def start_sweeping(retention_seconds: float) -> None:
    async def sweep() -> None:
        before = utcnow() - datetime.timedelta(seconds=retention_seconds)
        forgotten = await changes.forget_removed(before)
        if forgotten:
            log.info("forgot %d deletes older than %g s", forgotten, retention_seconds)

    background.current().every(SWEEP_SECONDS, sweep, "change-retention-sweeper")
