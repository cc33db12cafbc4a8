"""Deleting sources, datasets and labels: gone for readers at once, their rows removed
(or, for a label, its name pruned from the labellings) in the background (see
`store.purge` and `store.retired_labels`).

The server that deleted the resource starts its purge at once; the sweeper of every
server looks for purges nobody works on (a released lease, or one that ran out because
its server died) at start and then every `SWEEP_INTERVAL` seconds. A purge pauses
between its steps so that live writes get the database (SQLite has one writer), stops
between steps when the server stops, and after a failing step gives its lease back for
a later sweep to retry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from corrigo.server.domain.correction_work import replica
from corrigo.server.ops import background
from corrigo.server.store import purge, retired_labels
from corrigo.server.store.purge import Kind

log = logging.getLogger("corrigo.purge")

SWEEP_INTERVAL = 15.0
_SWEEP_BATCH = 100
# Between steps, at least this long and as long as the step took: SQLite's busy wait
# retries every 100 ms at most, so a waiting write always finds the database free.
STEP_PAUSE = 0.1
_ATTEMPTS = 3


async def delete_source(source_id: int) -> None:
    await purge.doom_source(source_id)
    await _launch(Kind.SOURCE, source_id)


async def delete_dataset(dataset_id: int) -> None:
    await purge.doom_dataset(dataset_id)
    await _launch(Kind.DATASET, dataset_id)


async def delete_label(dataset_id: int, name: str) -> None:
    await _launch(Kind.LABEL, await retired_labels.retire(dataset_id, name))


class _Steps(Protocol):
    """The work on one purge: `purge.Purging` or `retired_labels.Pruning`."""

    removed: int
    pause: float

    async def step(self) -> bool: ...


def _steps(kind: Kind, row_id: int) -> _Steps:
    if kind is Kind.LABEL:
        return retired_labels.Pruning(row_id, replica())
    return purge.Purging(kind, row_id, replica())


async def _launch(kind: Kind, row_id: int) -> None:
    if await purge.take_lease(kind, row_id, replica()):
        await _start(kind, row_id)


async def _start(kind: Kind, row_id: int) -> bool:
    """Work on a purge this server holds the lease of; False (the lease given back) once
    the server is stopping."""
    if background.current().spawn(_run(kind, row_id), f"purge-{kind.value}-{row_id}"):
        return True
    await purge.release_lease(kind, row_id, replica())
    return False


async def _run(kind: Kind, row_id: int) -> None:
    """Purge the row while this server holds the lease; give it back when stopping or
    after a step failed `_ATTEMPTS` times in a row."""
    work = background.current()
    purging = _steps(kind, row_id)
    loop = asyncio.get_running_loop()
    failures = 0
    while not work.stopping:
        started = loop.time()
        try:
            more = await purging.step()
        except purge.LeaseLost:
            log.warning("purge of %s %d: another server took it over", kind.value, row_id)
            return
        except Exception:
            failures += 1
            log.exception("purge of %s %d: a step failed (%d)", kind.value, row_id, failures)
            if failures == _ATTEMPTS:
                break
            more = True
        else:
            failures = 0
        if not more:
            log.info("purged %s %d (%d rows)", kind.value, row_id, purging.removed)
            return
        if await work.pause(max(STEP_PAUSE, loop.time() - started, purging.pause)):
            break
    await purge.release_lease(kind, row_id, replica())


async def sweep() -> int:
    """Take over the purges no server works on; how many."""
    taken = 0
    for kind, row_id in await purge.unleased(_SWEEP_BATCH):
        if await purge.take_lease(kind, row_id, replica()):
            if not await _start(kind, row_id):
                break
            taken += 1
    return taken


def start_sweeping() -> None:
    background.current().every(SWEEP_INTERVAL, sweep, "purge-sweeper")
