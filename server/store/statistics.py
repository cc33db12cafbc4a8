"""Keeps PostgreSQL's planner statistics of the comment table fresh after bulk loads.

The export walks the index `(source, ts_us, id)` a page at a time. Right after a bulk
load, before autovacuum has analyzed the table, the planner believes a source holds a
few hundred comments and sorts the whole source for every page instead. So once this
process has inserted `ANALYZE_AFTER` comments
since its last ANALYZE, it runs one in the background. SQLite needs none: its planner
walks the index without statistics.
"""

from __future__ import annotations

import asyncio
import logging

from corrigo.server.store.database import execute, is_sqlite

ANALYZE_AFTER = 5000

log = logging.getLogger("corrigo.store")
_inserted = 0
_running: set[asyncio.Task[None]] = set()


def comments_inserted(count: int) -> None:
    global _inserted
    if is_sqlite():
        return
    _inserted += count
    if _inserted >= ANALYZE_AFTER and not _running:
        _inserted = 0
        task = asyncio.get_running_loop().create_task(_analyze())
        _running.add(task)
        task.add_done_callback(_running.discard)


async def _analyze() -> None:
    try:
        await execute("ANALYZE comment", (), writes=True)
    except Exception:
        log.exception("ANALYZE comment failed")
