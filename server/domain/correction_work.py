"""Preparing and deleting correction sessions in the background.

A session with work to do (CREATED, SAMPLING, PREDICTING, DELETING) is worked on by the
server holding its lease (see `store.correction`), one step per status:

    CREATED -> SAMPLING -> (choose and claim documents) -> PREDICTING
    -> (attach predictions, project the score) -> ANNOTATING;  DELETING -> gone

Each step is one transaction that checks the session's status under its row lock, so
running a step twice (two servers, or a server resuming after a crash) does it once. A
step that keeps failing ends the session in FAILED with the reason; a step that meets
the database slow or away (its statement limit, or UNAVAILABLE) is no fault of the
session's: the server gives the lease back and a sweep tries again later. On shutdown a
worker stops between steps and gives its lease back. The sweeper of every server looks
for sessions nobody works on (a released lease, or one that ran out because its server
died) at start and then every `SWEEP_INTERVAL` seconds, and takes them over: a session
left mid-work by a crashed server is resumed by the next server to start, or by another
replica within a lease period. The sweep itself is leased too (`store.leases`): of the
replicas and workers sharing a database, one sweeps at a time.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from corrigo.server.api.errors import DeadlineExceeded, Unavailable
from corrigo.server.domain import predicted_score
from corrigo.server.ops import background, metrics, tracing
from corrigo.server.store import correction, correction_sampling, leases
from corrigo.server.store.correction import Status

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger("corrigo.correction")

SWEEP_INTERVAL = 15.0
SWEEP_LEASE = "correction-sweep"
# Held across two intervals, so its holder renews it in time; when the holder dies,
# another server sweeps within two intervals.
_SWEEP_PERIOD = datetime.timedelta(seconds=2 * SWEEP_INTERVAL)
_SWEEP_BATCH = 100
_ATTEMPTS = 3


_identity: tuple[int, str] | None = None


def replica() -> str:
    """Who this server process is, in the leases: made by the process itself, so every
    worker (spawned or forked) has its own."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{pid}-{secrets.token_hex(6)}")
    return _identity[1]


async def _predict(session_id: int) -> None:
    row = await correction.find(session_id)
    if row is None or row.status != Status.PREDICTING:
        return
    if row.model_version_id is None:
        await correction.fail(
            session_id, f"model {row.model_id} has no version: there are no predictions to correct"
        )
        return
    history = await correction_sampling.version_history(row.model_id, row.model_version_id)
    score = predicted_score.project(history, row.document_count)
    await correction_sampling.attach_predictions(session_id, score)


_STEPS: dict[int, tuple[str, Callable[[int], Awaitable[None]]]] = {
    Status.CREATED: (
        "starting",
        lambda session_id: correction.advance(session_id, Status.CREATED, Status.SAMPLING),
    ),
    Status.SAMPLING: ("sampling", correction_sampling.sample),
    Status.PREDICTING: ("attaching predictions", _predict),
    Status.DELETING: ("deleting", correction.delete),
}


class _Deferred(Exception):
    """The step met the database slow or away: it is tried again by a later sweep."""


async def _step(session_id: int, status: int, trace: Context | None) -> None:
    """Run the status's step, again after an unexpected error; after the last attempt
    the session FAILED with the error's id (a deletion is left to the lease's expiry).
    Each attempt is a span, a child of `trace` (the call that started the work)."""
    what, step = _STEPS[status]
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with tracing.span(
                f"correction session: {what}",
                {"corrigo.correction_session": session_id, "corrigo.attempt": attempt},
                parent=trace,
            ):
                await step(session_id)
            return
        except (DeadlineExceeded, Unavailable) as error:
            log.warning(
                "correction session %d: %s deferred to a later sweep: %s",
                session_id,
                what,
                error.message,
            )
            raise _Deferred() from None
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception(
                "correction session %d: %s failed (attempt %d, error id %s)",
                session_id,
                what,
                attempt,
                error_id,
            )
            if attempt < _ATTEMPTS:
                if await background.current().pause(0.1 * attempt):
                    return
                continue
            if status == Status.DELETING:
                raise
            await correction.fail(session_id, f"internal error while {what} (error id {error_id})")


async def _run(session_id: int, trace: Context | None) -> None:
    """Work on a session this server holds the lease of, until it needs no more work."""
    work = background.current()
    while True:
        while not work.stopping:
            status = await correction.status_of(session_id)
            if status not in _STEPS:
                break
            if not await correction.renew_lease(session_id, replica()):
                return  # The lease ran out and another server took the session over.
            try:
                await _step(session_id, status, trace)
            except _Deferred:
                await correction.release_lease(session_id, replica())
                return
        await correction.release_lease(session_id, replica())
        if work.stopping:
            return
        # A deletion marked while this server held the lease found it taken: take the
        # lease again for it.
        if not await correction.take_lease(session_id, replica()):
            return


async def launch(session_id: int) -> None:
    """Work on a session whose lease this server holds; the lease is given back when the
    server is stopping (the next one resumes the work)."""
    # The work runs in a fresh context: its spans are linked to the caller's by hand.
    work = _run(session_id, tracing.current_context())
    if not background.current().spawn(work, f"correction-session-{session_id}"):
        await correction.release_lease(session_id, replica())


async def sweep() -> list[int]:
    """Take over the sessions with work to do that no server works on; their ids."""
    taken = []
    for session_id in await correction.unleased(_SWEEP_BATCH):
        if await correction.take_lease(session_id, replica()):
            await launch(session_id)
            taken.append(session_id)
    metrics.swept(len(taken))
    return taken


async def _sweeping() -> None:
    work = background.current()
    while not work.stopping:
        try:
            if await leases.take(SWEEP_LEASE, replica(), _SWEEP_PERIOD):
                log.debug("sweeping correction sessions")
                await sweep()
        except (DeadlineExceeded, Unavailable) as error:
            log.info("sweep skipped, the database is busy or away: %s", error.message)
        except Exception:
            log.exception("sweeping correction sessions failed")
        if await work.pause(SWEEP_INTERVAL):
            break
    try:
        await leases.release(SWEEP_LEASE, replica())
    except Exception as error:
        log.warning("giving the sweep's lease back failed (it runs out): %r", error)


def start_sweeping() -> None:
    background.current().spawn(_sweeping(), "correction-sweeper")
