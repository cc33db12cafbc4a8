"""Follow mode's heavy guarantees, on server processes: followers on one replica see every
change written through another (PostgreSQL's notices), followers resume across a SIGKILL
of their server with nothing acknowledged lost, two hundred stalled followers starve
nothing, and the long run of tests/test_follow_guarantee.py (writers against followers
cut off and resumed)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import admin_pb2, datasets_pb2, datasets_pb2_grpc, sources_pb2
from corrigo.v1.comments_pb2 import Label
from corrigo.v1.datasets_pb2 import ExportedComment
from tests import dataset_helpers as h
from tests import test_follow_guarantee as guarantee
from tests.processes import ServerProcess, bootstrap, bootstrapped_server
from tests.reliability import report
from tests.reliability.test_crash import _query
from tests.reliability.test_store import fixed_window_channel, rss_back_mb, rss_mb

pytestmark = pytest.mark.heavy

State = guarantee.State
# Comments every test starts with: `k…` are changed and labelled, `d…` are deleted.
KEPT = [f"k{i:03d}" for i in range(60)]
DELETABLE = [f"d{i:03d}" for i in range(60)]


async def _world(client: AsyncClient, project: str, text: str = "seed") -> str:
    """Dataset `ds` over source `mailbox` holding KEPT and DELETABLE, with the label L: the
    source's hex id."""
    await client.admin.CreateProject(
        admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=project))
    )
    src = await h.source(client, project)
    await h.dataset(client, project, [src.id])
    await client.datasets.CreateLabelDefs(h.label_defs(project, ["L"]))
    await h.sync(client, project, "mailbox", [h.comment(i, 0, text) for i in KEPT + DELETABLE])
    return src.id


def _follow_request(
    owner: str, continuation: str = "", limit: int = 0
) -> datasets_pb2.StreamExportDatasetRequest:
    return datasets_pb2.StreamExportDatasetRequest(
        owner=owner, name="ds", follow=True, limit=limit, continuation=continuation
    )


@dataclass
class _Follower:
    """A follow stream's rebuilt state, what it was sent, and when each text arrived."""

    limit: int
    state: State = field(default_factory=dict)
    continuation: str = ""
    deleted: set[str] = field(default_factory=set)
    arrived: dict[str, float] = field(default_factory=dict)
    live: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    messages: int = 0
    resumes: int = 0

    def take(self, message: datasets_pb2.StreamExportDatasetResponse) -> None:
        # Every message carries the position to resume after it.
        assert message.continuation
        now = time.perf_counter()
        guarantee.apply(self.state, message)
        self.continuation = message.continuation
        self.deleted.update(message.deleted_uids)
        for result in message.comments:
            self.arrived.setdefault(result.comment.messages[0].body.text, now)
        if message.live:
            self.live.set()
        self.messages += 1
        self.changed.set()

    async def read(self, client: AsyncClient, owner: str) -> None:
        """Read until cancelled (one stream: a broken one fails the test)."""
        call = client.datasets.StreamExportDataset(_follow_request(owner, limit=self.limit))
        try:
            async for message in call:
                self.take(message)
        finally:
            call.cancel()


async def _until_equal(followers: list[_Follower], truth: State, seconds: float = 30) -> None:
    """Wait (at most `seconds`) for every follower's state to equal the truth."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            for follower in followers:
                while follower.state != truth:
                    follower.changed.clear()
                    await follower.changed.wait()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def test_followers_on_one_replica_see_every_change_written_through_another(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; SQLite is the single-process default")
    org = f"fol-{uuid.uuid4().hex[:8]}"
    token = bootstrap(scratch_db, org, f"admin@{org}.test")
    servers = [ServerProcess(scratch_db, tmp_path / f"replica-{i}.log") for i in range(2)]
    for server in servers:
        server.wait_serving()
    seconds = 4.0 * report.scale()
    sent: dict[str, float] = {}
    deleted: set[str] = set()
    writes = 0
    try:
        async with (
            AsyncClient(servers[0].target, token) as one,
            AsyncClient(servers[1].target, token) as two,
        ):
            src = await _world(one, "rep")
            followers = [_Follower(limit) for limit in (1, 7, 64)]
            reading = [asyncio.ensure_future(f.read(two, "rep")) for f in followers]
            await asyncio.wait_for(asyncio.gather(*(f.live.wait() for f in followers)), 30)
            rng = random.Random(3)
            deadline = time.monotonic() + seconds
            round_ = 0
            while time.monotonic() < deadline:
                # A new comment and three changed ones, all with this round's text.
                text = f"s{round_}"
                ids = [f"n{round_:05d}", *rng.sample(KEPT, 3)]
                sent[text] = time.perf_counter()
                await h.sync(one, "rep", "mailbox", [h.comment(i, 1, text) for i in ids])
                assigned = [Label(name="L", sentiment="positive")] if round_ % 2 else []
                await one.datasets.UpdateLabelling(
                    datasets_pb2.UpdateLabellingRequest(
                        owner="rep",
                        name="ds",
                        comment_uid=f"{src}.{rng.choice(KEPT)}",
                        assigned=assigned,
                    )
                )
                writes += 2
                if round_ % 4 == 0 and len(deleted) < len(DELETABLE):
                    gone = [d for d in DELETABLE if f"{src}.{d}" not in deleted][:2]
                    await one.sources.DeleteComments(
                        sources_pb2.DeleteCommentsRequest(owner="rep", name="mailbox", ids=gone)
                    )
                    deleted.update(f"{src}.{d}" for d in gone)
                    writes += 1
                round_ += 1
                await asyncio.sleep(0.02)
            truth = await guarantee.truth(one, "rep")
            await _until_equal(followers, truth)
            for task in reading:
                task.cancel()
            await asyncio.gather(*reading, return_exceptions=True)
    finally:
        for server in servers:
            assert server.stop() == 0
    latencies = []
    for follower in followers:
        assert follower.state == truth
        # Every sync and every delete came through as a change, not only its end state.
        assert set(sent) <= set(follower.arrived), sorted(set(sent) - set(follower.arrived))[:5]
        assert deleted <= follower.deleted
        latencies += [follower.arrived[text] - at for text, at in sent.items()]
    report.record(
        "follow across replicas",
        backend,
        writes=writes,
        followers=len(followers),
        comments=len(truth),
        samples=len(latencies),
        p50_ms=round(statistics.median(latencies) * 1000, 1),
        p99_ms=round(_percentile(latencies, 0.99) * 1000, 1),
    )


@dataclass
class _Ledger:
    """What the server acknowledged, across kills."""

    created: set[str] = field(default_factory=set)
    labelled: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    @property
    def acknowledged(self) -> int:
        return len(self.created) + len(self.labelled) + len(self.deleted)


class _Current:
    """The server followers reach now (a new process, on a new port, after each kill)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.up = asyncio.Event()
        self.up.set()


async def _resuming(follower: _Follower, current: _Current, owner: str) -> None:
    """Follow until cancelled, resuming from the last continuation whenever the server
    goes away."""
    while True:
        await current.up.wait()
        call = current.client.datasets.StreamExportDataset(
            _follow_request(owner, follower.continuation, follower.limit)
        )
        try:
            async for message in call:
                follower.take(message)
        except CorrigoError as error:
            assert error.code == grpc.StatusCode.UNAVAILABLE, error
            follower.resumes += 1
            await asyncio.sleep(0.1)
        finally:
            call.cancel()


async def _crash_writer(
    client: AsyncClient, owner: str, src: str, ledger: _Ledger, tag: str, seed: int
) -> None:
    """Syncs, labellings and deletes in turn until the server dies."""
    rng = random.Random(seed)
    for call in range(10**6):
        try:
            if call % 3 == 0:
                ids = [f"{tag}n{call}-{i}" for i in range(5)]
                changed = rng.sample(KEPT, 3)
                comments = [h.comment(i, 2, f"{tag}-{call}") for i in ids + changed]
                await client.sources.SyncComments(
                    sources_pb2.SyncCommentsRequest(owner=owner, name="mailbox", comments=comments),
                    timeout=10,
                )
                ledger.created.update(f"{src}.{i}" for i in ids)
            elif call % 3 == 1:
                uid = f"{src}.{rng.choice(KEPT)}"
                await client.datasets.UpdateLabelling(
                    datasets_pb2.UpdateLabellingRequest(
                        owner=owner,
                        name="ds",
                        comment_uid=uid,
                        assigned=[Label(name="L", sentiment="positive")],
                    ),
                    timeout=10,
                )
                ledger.labelled.add(uid)
            else:
                left = [d for d in DELETABLE if f"{src}.{d}" not in ledger.deleted]
                if left:
                    gone = rng.choice(left)
                    await client.sources.DeleteComments(
                        sources_pb2.DeleteCommentsRequest(owner=owner, name="mailbox", ids=[gone]),
                        timeout=10,
                    )
                    ledger.deleted.add(f"{src}.{gone}")
        except CorrigoError:
            return  # the server is gone; what was in flight is not acknowledged


async def test_followers_resume_across_a_sigkill_and_lose_nothing_acknowledged(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    kills = max(2, int(2 * report.scale()))
    server, token = bootstrapped_server(scratch_db, tmp_path / "server-0.log", "fk")
    ledger = _Ledger()
    client = AsyncClient(server.target, token)
    current = _Current(client)
    followers = [_Follower(limit) for limit in (1, 7, 64)]
    src = await _world(client, "fk")
    reading = [asyncio.ensure_future(_resuming(f, current, "fk")) for f in followers]
    try:
        for kill in range(kills):
            writers = [
                asyncio.ensure_future(
                    _crash_writer(current.client, "fk", src, ledger, f"k{kill}w{w}", kill * 10 + w)
                )
                for w in range(2)
            ]
            await asyncio.sleep(random.uniform(1.0, 2.5))
            current.up.clear()
            server.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*writers), 30)
            server.stop()
            server = ServerProcess(scratch_db, tmp_path / f"server-{kill + 1}.log")
            await asyncio.to_thread(server.wait_serving)
            await current.client.close()
            current.client = AsyncClient(server.target, token)
            current.up.set()
        truth = await guarantee.truth(current.client, "fk")
        await _until_equal(followers, truth)
    finally:
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
        await current.client.close()
        code = server.stop()
    assert code == 0
    if scratch_db.startswith("sqlite:///"):
        assert _query(scratch_db, "PRAGMA integrity_check") == [("ok",)]
    # Nothing acknowledged is lost: in the fresh export, hence in every follower's state.
    assert ledger.created <= set(truth), sorted(ledger.created - set(truth))[:5]
    assert not ledger.deleted & set(truth)
    for uid in ledger.labelled:
        exported = ExportedComment.FromString(truth[uid])
        assert [label.name for label in exported.annotations.labels.assigned] == ["L"], uid
    for follower in followers:
        assert follower.resumes >= kills, (follower.resumes, kills)
        assert sorted(follower.state) == sorted(truth)
        assert follower.state == truth
    report.record(
        "follow through SIGKILL",
        backend,
        kills=kills,
        followers=len(followers),
        resumes=sum(f.resumes for f in followers),
        acknowledged=ledger.acknowledged,
        comments=len(truth),
    )


def _transactions_open(url: str) -> int:
    """Connections of the database's that sit in a transaction (PostgreSQL; 0 on SQLite)."""
    if not url.startswith("postgresql://"):
        return 0
    return int(
        str(
            _query(
                url,
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'",
            )[0][0]
        )
    )


async def test_two_hundred_stalled_followers_starve_nothing(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    count, comments = 200, 1000
    server, token = bootstrapped_server(scratch_db, tmp_path / "server.log", "sf")
    text = "x" * 1024
    with server:
        async with AsyncClient(server.target, token) as client:
            await _world(client, "sf", text)
            await h.sync(
                client, "sf", "mailbox", [h.comment(f"c{i}", i, text) for i in range(comments)]
            )
            # A live continuation: half the followers stall in the snapshot, half in the live part.
            probe = _Follower(64)
            probing = asyncio.ensure_future(probe.read(client, "sf"))
            await asyncio.wait_for(probe.live.wait(), 30)
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
            channel = fixed_window_channel(server.target, token)
            stub = datasets_pb2_grpc.DatasetServiceStub(channel)
            rss_start = rss_mb(server.process.pid)
            streams = [
                stub.StreamExportDataset(
                    _follow_request("sf", probe.continuation if i % 2 else "", limit=64)
                )
                for i in range(count)
            ]
            stop = asyncio.Event()

            async def write() -> int:
                # Changes keep coming for the followers stalled in the live part.
                made = 0
                rng = random.Random(5)
                while not stop.is_set():
                    ids = rng.sample(range(comments), 20)
                    await h.sync(
                        client,
                        "sf",
                        "mailbox",
                        [h.comment(f"c{i}", i, f"{made}{text}") for i in ids],
                    )
                    made += 1
                    await asyncio.sleep(0.05)
                return made

            # Started first: a follower resumed in the live part sends nothing until a change.
            writing = asyncio.ensure_future(write())
            firsts = await asyncio.gather(*(s.read() for s in streams))
            assert all(first.continuation for first in firsts)
            assert all(first.comments for first in firsts)
            await asyncio.sleep(2.0 * report.scale())
            rss_stalled = rss_mb(server.process.pid)
            held = _transactions_open(scratch_db)
            began = time.monotonic()
            for i in range(20):
                await client.datasets.CreateLabelDefs(h.label_defs("sf", [f"L{i}"]), timeout=5)
                got = await client.datasets.GetDataset(
                    datasets_pb2.GetDatasetRequest(owner="sf", name="ds"), timeout=5
                )
                assert got.dataset.name == "ds"
            answered_in = time.monotonic() - began
            stop.set()
            written = await writing
            for stream in streams:
                stream.cancel()
            await channel.close()
            await asyncio.sleep(1)
            truth = await guarantee.truth(client, "sf")
            assert len(truth) == len(KEPT) + len(DELETABLE) + comments
            rss_end = rss_back_mb(server.process.pid, rss_start + 30)
    assert written > 0
    assert held == 0
    # A stalled follower holds the message it is sending (about 70 KB here) and, in the live
    # part, the rows of the batch it is sending (up to 4 messages' worth).
    assert rss_stalled - rss_start < 100, (rss_start, rss_stalled, rss_end)
    assert rss_end - rss_start < 30, (rss_start, rss_stalled, rss_end)
    report.record(
        "stalled followers",
        backend,
        streams=count,
        calls=40,
        writes=written,
        seconds=round(answered_in, 2),
        rss_stalled=round(rss_stalled - rss_start, 1),
        rss_end=round(rss_end - rss_start, 1),
    )


@pytest.mark.timeout(600)
async def test_followers_cut_off_five_times_under_four_writers(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    seconds, cuts = 15.0 * report.scale(), 5
    server, token = bootstrapped_server(scratch_db, tmp_path / "server.log", "fg")
    with server:
        async with AsyncClient(server.target, token) as client:
            await client.admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="fg"))
            )
            written, truth, resumes = await guarantee.run(client, "fg", seconds, cuts)
    assert resumes == [cuts] * guarantee.FOLLOWERS, resumes
    report.record(
        "follow under load",
        backend,
        writers=len(written),
        writes=sum(written),
        seconds=round(seconds),
        followers=guarantee.FOLLOWERS,
        cuts=cuts,
        comments=len(truth),
    )
