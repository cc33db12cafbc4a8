"""PostgreSQL: the commits of other server processes heard as they happen, so that a
follower there (`follow`) does not wait for its poll.

Each server process keeps one connection of its own (outside the pools): after its own
commits it sends a notice on CHANNEL, at most one per NOTICE_SECONDS (a burst of writes
is one notice), and it listens there, waking its followers (`commits.heard`) on another
process's notice. The notice is sent after the commit, outside the write's transaction:
a NOTIFY inside it would make every committing writer of the database take one lock.
A lost connection costs latency, never a change: followers still poll the positions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg

from corrigo.server.ops.background import Background
from corrigo.server.store import commits

log = logging.getLogger("corrigo.store")

CHANNEL = "corrigo_commits"
# The shortest time between two notices of one process.
NOTICE_SECONDS = 0.005
# How long a notice may take to send, and the wait before connecting again.
SEND_SECONDS = 5.0
RECONNECT_SECONDS = 1.0
# This process in its notices (a pid may repeat on another machine).
_SENDER = uuid.uuid4().hex
# How often the loop looks whether the server is stopping.
STOPPING_CHECK_SECONDS = 0.5


def _heard(conn: object, pid: int, channel: str, sender: str) -> None:
    if sender != _SENDER:
        commits.heard()


async def run(url: str, work: Background) -> None:
    """Send and hear notices until the server stops, connecting again after a loss."""
    while not work.stopping:
        try:
            conn = await asyncpg.connect(url, timeout=SEND_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            log.warning("commit notices: cannot connect (followers poll meanwhile): %r", error)
            if await work.pause(RECONNECT_SECONDS):
                return
            continue
        try:
            await conn.add_listener(CHANNEL, _heard)
            await _announce(conn, work)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("commit notices: connection lost (followers poll meanwhile): %r", error)
        finally:
            conn.terminate()
        if await work.pause(RECONNECT_SECONDS):
            return


async def _announce(conn: asyncpg.Connection, work: Background) -> None:
    """Send a notice after each burst of this process's commits, until stopping or the
    connection is lost."""
    seen = commits.local_seen()
    while not work.stopping and not conn.is_closed():
        await commits.after_local(seen, STOPPING_CHECK_SECONDS)
        if commits.local_seen() == seen:
            continue
        seen = commits.local_seen()
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _SENDER, timeout=SEND_SECONDS)
        await asyncio.sleep(NOTICE_SECONDS)
