"""The store under hostile use, on both backends: stream consumers that stop reading,
no free connection, writes cancelled at random points, and reads that must not wait
for a write."""

from __future__ import annotations

import asyncio
import datetime
import gc
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import psycopg2
import pytest

from corrigo.client import CorrigoError
from corrigo.client.channel import auth_metadata
from corrigo.server.store import database, identity, retired_labels
from corrigo.v1 import (
    admin_pb2,
    comments_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    models_pb2,
    sources_pb2,
)
from tests import dataset_helpers as h
from tests.conftest import Org, Running
from tests.reliability import report
from tests.state_helpers import purges_done

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _filled(org: Org, n: int, body_bytes: int = 64) -> str:
    """A project holding source `src` of `n` comments and dataset `ds` over it."""
    project = await org.project()
    source = await h.source(org.admin, project.name, "src")
    await h.dataset(org.admin, project.name, [source.id])
    text = "x" * body_bytes
    await h.sync(org.admin, project.name, "src", [h.comment(f"c{i}", i, text) for i in range(n)])
    return project.name


async def _in_use_settles(running: Running) -> int:
    """How many pool connections are out once nothing should hold one (polled a while)."""
    db = running.server.db
    for _ in range(100):
        if db.reads.in_use + db.writes.in_use == 0:
            return 0
        await asyncio.sleep(0.02)
    return db.reads.in_use + db.writes.in_use


async def test_stalled_export_streams_hold_no_connection(org: Org, server: Running) -> None:
    # Big comments: a page is far more than a stream's flow-control window, so the
    # server cannot send the second page to a client that stopped reading.
    owner = await _filled(org, 600, body_bytes=4096)
    request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=256)
    streams = [org.admin.datasets.StreamExportDataset(request) for _ in range(40)]
    try:
        firsts = await asyncio.gather(*(stream.read() for stream in streams))
        assert all(len(first.comments) == 256 for first in firsts)
        # Every stream stalled with a page read ahead: no connection is held, and writes
        # and reads answer at once.
        assert await _in_use_settles(server) == 0
        began = time.monotonic()
        for i in range(20):
            await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, [f"L{i}"]), timeout=5)
            got = await org.admin.datasets.GetDataset(
                datasets_pb2.GetDatasetRequest(owner=owner, name="ds"), timeout=5
            )
            assert got.dataset.name == "ds"
        assert time.monotonic() - began < 5
    finally:
        for stream in streams:
            stream.cancel()
    assert await _in_use_settles(server) == 0
    # A stream read to its end after the others were cancelled still answers everything.
    pages = [page async for page in org.admin.datasets.StreamExportDataset(request)]
    assert sum(len(page.comments) for page in pages) == 600


async def test_no_free_connection_answers_unavailable_before_the_deadline(
    org: Org, server: Running
) -> None:
    owner = await _filled(org, 3)
    pool = server.server.db.writes
    taken = [await pool.acquire() for _ in range(pool.size)]
    # A channel that does not retry (the client retries this RPC): the server's own answer.
    plain = grpc.aio.insecure_channel(server.target)
    try:
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await datasets_pb2_grpc.DatasetServiceStub(plain).CreateLabelDefs(
                h.label_defs(owner, ["Busy"]),
                timeout=1.0,
                metadata=auth_metadata(org.admin_token),
            )
        elapsed = time.monotonic() - began
    finally:
        await plain.close()
        for conn in taken:
            pool.release(conn, failed=False)
    error = CorrigoError.from_rpc_error(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
    assert 0.5 < elapsed < 1.0
    created = await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["Free"]), timeout=5)
    assert [d.name for d in created.label_defs] == ["Free"]


async def _write(org: Org, owner: str, source: str, kind: int, tag: str, version: int) -> Any:
    """One write of each kind the cancellation test throws at the server (`source`: the
    hex id of the source `src`)."""
    admin = org.admin
    if kind == 0:  # a sync of 50 comments, all or nothing
        comments = [h.comment(f"{tag}-{i}", i) for i in range(50)]
        return await admin.sources.SyncComments(
            sources_pb2.SyncCommentsRequest(owner=owner, name="src", comments=comments)
        )
    if kind == 1:  # five label definitions in one transaction
        return await admin.datasets.CreateLabelDefs(
            h.label_defs(owner, [f"{tag} > {i}" for i in range(5)])
        )
    if kind == 2:
        return await admin.datasets.UpdateLabelling(
            datasets_pb2.UpdateLabellingRequest(
                owner=owner,
                name="ds",
                comment_uid=f"{source}.c{random.randrange(20)}",
                assigned=[comments_pb2.Label(name="Fixed", sentiment="positive")],
            )
        )
    if kind == 3:
        return await admin.models.UploadPredictions(
            models_pb2.UploadPredictionsRequest(
                owner=owner,
                dataset="ds",
                version=version,
                predictions=[
                    models_pb2.CommentPredictions(
                        uid=f"{source}.c{i}",
                        labels=[comments_pb2.PredictedLabel(name=tag, probability=0.5)],
                    )
                    for i in range(20)
                ],
            )
        )
    return await admin.admin.CreateProject(
        admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=f"p-{tag}"))
    )


async def _outcome(call: Awaitable[Any]) -> str:
    """How a call ended: "OK", its error's status code, or "cancelled" when its caller
    cancelled it."""
    try:
        await call
    except asyncio.CancelledError:
        return "cancelled"
    except CorrigoError as error:
        return error.code.name
    return "OK"


async def test_writes_cancelled_at_random_points_leave_nothing_half_written(
    org: Org, server: Running
) -> None:
    owner = await _filled(org, 20)
    sources = await org.admin.sources.ListSources(sources_pb2.ListSourcesRequest(owner=owner))
    source = sources.sources[0].id
    version = (await h.model_version(org.admin, owner, "ds")).version
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["Fixed"]))
    rng = random.Random(15)
    tags = [f"t{i}-{uuid.uuid4().hex[:6]}" for i in range(1000)]

    async def cancelled(i: int) -> str:
        call = asyncio.ensure_future(_write(org, owner, source, i % 5, tags[i], version))
        await asyncio.sleep(rng.uniform(0, 0.03))
        call.cancel()
        return await _outcome(call)

    outcomes: list[str] = []
    for start in range(0, len(tags), 50):
        outcomes += await asyncio.gather(*(cancelled(i) for i in range(start, start + 50)))
    assert set(outcomes) <= {"cancelled", "OK", "CANCELLED"}, sorted(set(outcomes))
    assert outcomes.count("cancelled") > 100
    assert await _in_use_settles(server) == 0

    # All or nothing: every sync wrote its 50 comments or none, every CreateLabelDefs its
    # five names or none.
    export = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    per_sync: dict[str, int] = {}
    for uid in h.uids(export):
        comment_id = uid.split(".", 1)[1]
        if "-" in comment_id:  # a comment of a sync of the test (not one of `_filled`)
            sync = comment_id.rsplit("-", 1)[0]
            per_sync[sync] = per_sync.get(sync, 0) + 1
    assert set(per_sync.values()) <= {50}, per_sync
    defs = await org.admin.datasets.ListLabelDefs(
        datasets_pb2.ListLabelDefsRequest(owner=owner, name="ds")
    )
    per_def: dict[str, int] = {}
    for label in defs.label_defs:
        if " > " in label.name:
            parent = label.name.split(" > ")[0]
            per_def[parent] = per_def.get(parent, 0) + 1
    assert set(per_def.values()) <= {5}, per_def

    # Afterwards every kind of write answers OK.
    for kind in range(5):
        await _write(org, owner, source, kind, f"after-{kind}-{uuid.uuid4().hex[:6]}", version)
    assert await _in_use_settles(server) == 0
    backend = "postgres" if database.is_postgres(server.db_url) else "sqlite"
    report.record("cancellation", backend, calls=len(tags))


def _lock_token_row(running: Running, token_id: int) -> Any:
    """Another connection that holds a write lock the token's row would need: SQLite's
    database write lock, or PostgreSQL's lock of the row."""
    if database.is_postgres(running.db_url):
        conn = psycopg2.connect(running.db_url)
        conn.cursor().execute("SELECT 1 FROM api_token WHERE id = %s FOR UPDATE", (token_id,))
        return conn
    path = database.sqlite_path(running.db_url)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_token_first_use_does_not_wait_for_a_write(org: Org, server: Running) -> None:
    user_id, _ = await org.user()
    created = await org.admin.admin.CreateApiToken(
        admin_pb2.CreateApiTokenRequest(user_id=user_id, description="fresh")
    )
    token_id = int(created.token.split("_")[1])
    await identity.flush_uses()
    lock = _lock_token_row(server, token_id)
    try:
        client = org.client(created.token)
        began = time.monotonic()
        me = await client.admin.WhoAmI(admin_pb2.WhoAmIRequest(), timeout=3)
        assert me.user.id == user_id
        assert time.monotonic() - began < 1
    finally:
        lock.rollback()
        lock.close()
    assert await identity.flush_uses() >= 1
    listed = await org.admin.admin.ListApiTokens(admin_pb2.ListApiTokensRequest(user_id=user_id))
    used = [t for t in listed.api_tokens if t.id == token_id]
    assert used and used[0].HasField("last_used_at")


def _lock_source_row(running: Running, source_hex: str) -> Any:
    """Another connection that holds the lock a sync of the source needs: PostgreSQL's
    lock of the source's row, SQLite's database write lock."""
    if database.is_postgres(running.db_url):
        conn = psycopg2.connect(running.db_url)
        conn.cursor().execute("SELECT 1 FROM source WHERE hex_id = %s FOR UPDATE", (source_hex,))
        return conn
    conn = sqlite3.connect(
        database.sqlite_path(running.db_url), isolation_level=None, check_same_thread=False
    )
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _waiting_on_locks(running: Running) -> int:
    """PostgreSQL: the server's statements waiting for a lock (SQLite: none to ask)."""
    if not database.is_postgres(running.db_url):
        return 0
    with psycopg2.connect(running.db_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        (count,) = cursor.fetchone()
    return int(count)


async def _labels_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deleted labels of earlier tests pruned now: their pruning, which starts minutes
    after a delete, is a write that would queue behind a lock a test takes."""
    monkeypatch.setattr(retired_labels, "settle", lambda: datetime.timedelta(0))
    await purges_done()


async def test_abandoned_writes_behind_a_held_lock_never_starve_live_calls(
    org: Org, server: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await _labels_pruned(monkeypatch)
    owner = await _filled(org, 3)
    sources = await org.admin.sources.ListSources(sources_pb2.ListSourcesRequest(owner=owner))
    source_hex = sources.sources[0].id
    db = server.server.db
    abandoned = 2 * (db.reads.size + db.writes.size)
    lock = await asyncio.to_thread(_lock_source_row, server, source_hex)
    try:

        async def sync(i: int) -> str:
            request = sources_pb2.SyncCommentsRequest(
                owner=owner, name="src", comments=[h.comment(f"abandoned-{i}", i)]
            )
            call = org.admin.sources.SyncComments(request, timeout=0.5 if i % 2 else None)
            if i % 2 == 0:  # half are cancelled by their client, half meet their deadline
                await asyncio.sleep(0.3)
                call.cancel()
            return await _outcome(call)

        writes = asyncio.gather(*(sync(i) for i in range(abandoned)))
        # Reads with a 1 s deadline answer for as long as the lock is held.
        began = time.monotonic()
        reads = 0
        while time.monotonic() - began < 3:
            got = await org.admin.datasets.GetDataset(
                datasets_pb2.GetDatasetRequest(owner=owner, name="ds"), timeout=1
            )
            assert got.dataset.name == "ds"
            listed = await org.admin.datasets.ListDatasets(
                datasets_pb2.ListDatasetsRequest(), timeout=1
            )
            assert "ds" in [d.name for d in listed.datasets]
            me = await org.admin.admin.WhoAmI(admin_pb2.WhoAmIRequest(), timeout=1)
            assert me.user.id
            reads += 3
        outcomes = await writes
        # UNAVAILABLE: no write connection was free before the deadline (they queue).
        assert set(outcomes) <= {"cancelled", "CANCELLED", "DEADLINE_EXCEEDED", "UNAVAILABLE"}, (
            outcomes
        )
        # The abandoned statements were stopped on the database: none waits for the lock
        # and no connection is held, while the lock still is.
        for _ in range(50):
            if _waiting_on_locks(server) == 0 and await _in_use_settles(server) == 0:
                break
            await asyncio.sleep(0.05)
        assert _waiting_on_locks(server) == 0
        assert await _in_use_settles(server) == 0
        # The lock is still held: a write with a deadline answers DEADLINE_EXCEEDED on time.
        began = time.monotonic()
        with pytest.raises(CorrigoError) as raised:
            await org.admin.sources.SyncComments(
                sources_pb2.SyncCommentsRequest(
                    owner=owner, name="src", comments=[h.comment("late", 1)]
                ),
                timeout=1,
            )
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - began < 1.5
    finally:
        await asyncio.to_thread(lock.rollback)
        await asyncio.to_thread(lock.close)
    assert reads >= 9
    # Once the lock is released, a write with a 1 s deadline answers OK.
    answer = await org.admin.sources.SyncComments(
        sources_pb2.SyncCommentsRequest(owner=owner, name="src", comments=[h.comment("after", 1)]),
        timeout=1,
    )
    assert answer.new == 1
    assert await _in_use_settles(server) == 0
    # The stopped statements' failures were their callers' to report, not left unread.
    gc.collect()
    unread = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert unread == []
