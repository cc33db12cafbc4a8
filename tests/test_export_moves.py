"""The export never repeats a comment whatever commits when: a sync that moves comments'
`timestamp` is stamped with the move clock as it commits, and an export leaves out the
comments stamped after it started (see server/store/migrations/0030_move_clock.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import peewee
import pytest
from playhouse.migrations import Runner

from corrigo.client import AsyncClient
from corrigo.server.store import database
from corrigo.server.store.database import MIGRATIONS
from corrigo.v1 import datasets_pb2, sources_pb2
from tests import dataset_helpers as h
from tests import migration_helpers as mh
from tests.conftest import Org
from tests.migration_helpers import scratch  # noqa: F401 (a fixture)

_ASYNC = pytest.mark.asyncio(loop_scope="session")


@contextlib.contextmanager
def write_lock(db_url: str, source_hex: str, comment_id: str) -> Iterator[None]:
    """Another writer holding what a sync of `comment_id` must wait for: SQLite's write
    lock, or the comment's row lock on PostgreSQL."""
    if database.is_postgres(db_url):
        import psycopg2

        conn = psycopg2.connect(db_url)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT c.id FROM comment AS c JOIN source AS s ON s.id = c.source_id "
                    "WHERE s.hex_id = %s AND c.comment_id = %s FOR UPDATE",
                    (source_hex, comment_id),
                )
                assert cursor.fetchall()
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    lite = sqlite3.connect(database.sqlite_path(db_url), isolation_level=None)
    try:
        lite.execute("BEGIN IMMEDIATE")
        yield
    finally:
        lite.execute("ROLLBACK")
        lite.close()


@_ASYNC
async def test_a_sync_that_commits_after_the_export_passed_its_comment(org: Org) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name, "s")
    await h.dataset(org.admin, project.name, [src.id])
    await h.sync(org.admin, project.name, "s", [h.comment(f"c{i}", i) for i in range(30)])
    request = datasets_pb2.ExportDatasetRequest(owner=project.name, name="ds", limit=10)

    with write_lock(org.running.db_url, src.id, "c0"):
        # The sync starts before the export and waits for the other writer...
        moving = asyncio.ensure_future(
            h.sync(org.admin, project.name, "s", [h.comment("c0", 1000, "moved")])
        )
        await asyncio.sleep(0.5)
        assert not moving.done()
        # ... while the export starts and passes c0's old position.
        first = await org.admin.datasets.ExportDataset(request)
        assert h.uids([first])[0] == f"{src.id}.c0"
    # Then it commits, moving c0 ahead of the export.
    assert (await moving).updated == 1
    request.continuation = first.continuation
    rest = await h.export_all(org.admin, request)
    returned = h.uids([first, *rest])
    assert returned == [f"{src.id}.c{i}" for i in range(30)]
    # A new export sees c0 where it is now.
    fresh = h.uids(
        await h.export_all(
            org.admin, datasets_pb2.ExportDatasetRequest(owner=project.name, name="ds", limit=10)
        )
    )
    assert fresh == [f"{src.id}.c{i}" for i in range(1, 30)] + [f"{src.id}.c0"]


@dataclass
class _World:
    """What the writers have done, as the exports check it: each comment's timestamp
    once its write was answered, and the comments each running export must not count on
    (moved or deleted by a write in flight while it ran)."""

    timestamps: dict[str, int] = field(default_factory=dict)
    in_flight: dict[int, set[str]] = field(default_factory=dict)
    exempt: list[set[str]] = field(default_factory=list)
    used: set[int] = field(default_factory=set)

    def fresh_second(self, rng: random.Random) -> int:
        # Unique timestamps: the export's order is then the timestamps' order.
        while True:
            second = rng.randrange(10_000_000)
            if second not in self.used:
                self.used.add(second)
                return second

    def starting(self, key: int, uids: set[str]) -> None:
        self.in_flight[key] = uids
        for exempt in self.exempt:
            exempt |= uids


async def _writer(
    client: AsyncClient, owner: str, source: str, hex_id: str, world: _World, stop: asyncio.Event
) -> None:
    rng = random.Random(hex_id)
    key = id(rng)
    serial = 0
    while not stop.is_set():
        mine = [uid for uid in world.timestamps if uid.startswith(hex_id)]
        picked = rng.sample(mine, min(len(mine), rng.randint(1, 6)))
        if rng.random() < 0.2:
            world.starting(key, set(picked))
            await client.sources.DeleteComments(
                sources_pb2.DeleteCommentsRequest(
                    owner=owner, name=source, ids=[uid.split(".")[1] for uid in picked]
                )
            )
            for uid in picked:
                del world.timestamps[uid]
        else:
            moves = picked[: len(picked) // 2]
            edits = picked[len(picked) // 2 :]
            serial += 1
            news = [f"{hex_id}.n{serial}x{i}" for i in range(rng.randint(0, 3))]
            after = {uid: world.fresh_second(rng) for uid in moves + news}
            after |= {uid: world.timestamps[uid] for uid in edits}
            world.starting(key, set(moves))
            await h.sync(
                client,
                owner,
                source,
                [h.comment(uid.split(".")[1], s, f"v{serial}") for uid, s in after.items()],
            )
            world.timestamps |= after
        world.in_flight.pop(key)
        await asyncio.sleep(rng.uniform(0, 0.01))


async def _export(client: AsyncClient, owner: str, stream: bool) -> list[str]:
    if stream:
        call = client.datasets.StreamExportDataset(
            datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=8)
        )
        return h.uids([m async for m in call])
    request = datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=8)
    return h.uids(await h.export_all(client, request))


@_ASYNC
async def test_exports_against_concurrent_syncs_and_deletes(org: Org) -> None:
    project = await org.project()
    sources = [await h.source(org.admin, project.name, name) for name in ("a", "b")]
    await h.dataset(org.admin, project.name, [s.id for s in sources])
    world = _World()
    rng = random.Random(16)
    for name, src in zip(("a", "b"), sources, strict=True):
        seconds = {f"{src.id}.c{i}": world.fresh_second(rng) for i in range(60)}
        await h.sync(
            org.admin,
            project.name,
            name,
            [h.comment(uid.split(".")[1], s) for uid, s in seconds.items()],
        )
        world.timestamps |= seconds

    stop = asyncio.Event()
    writers = [
        asyncio.ensure_future(_writer(org.admin, project.name, name, src.id, world, stop))
        for name, src in zip(("a", "b"), sources, strict=True)
    ]
    overlapped = 0
    try:
        for run in range(50):
            exempt = set().union(*world.in_flight.values())
            world.exempt.append(exempt)
            at_start = dict(world.timestamps)
            returned = await _export(org.admin, project.name, stream=run % 2 == 1)
            world.exempt.remove(exempt)
            overlapped += bool(exempt)
            assert len(returned) == len(set(returned)), f"export {run} repeated a comment"
            kept = [uid for uid in at_start if uid not in exempt]
            expected = sorted(kept, key=at_start.__getitem__)
            assert [uid for uid in returned if uid in set(kept)] == expected, (
                f"export {run} skipped or misordered a comment that was neither moved nor deleted"
            )
    finally:
        stop.set()
        await asyncio.gather(*writers)
    # Most exports ran while comments were moved or deleted under them.
    assert overlapped >= 40, overlapped


def test_the_move_clock_starts_past_every_earlier_move(
    scratch: peewee.Database,  # noqa: F811
) -> None:
    """Migration 0030 on a database with moved comments: the clock starts past their
    stamps (the sync's start time, then) and past the time it runs, so those moves count
    as made before any export, and a continuation issued before (carrying its export's
    start time) keeps its meaning."""
    db = scratch
    runner = Runner(db, str(MIGRATIONS))
    runner.up(target="0020_correction")
    mh.project(db)
    mh.source(db, id=1)
    before_us = int(time.time() * 1_000_000)
    # One move stamped by a server whose clock ran an hour ahead.
    ahead_us = before_us + 3_600_000_000
    for i, moved in enumerate((None, before_us - 5_000_000, ahead_us), 1):
        mh.comment(db, i, ts_moved_us=moved)
    assert runner.up(target="0030_move_clock") == ["0030_move_clock"]
    ((value,),) = db.execute_sql("SELECT value FROM move_clock WHERE id = 1").fetchall()
    assert value == ahead_us
    ((count,),) = db.execute_sql("SELECT COUNT(*) FROM move_clock").fetchall()
    assert count == 1
