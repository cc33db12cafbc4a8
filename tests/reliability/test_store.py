"""The store against a hostile environment, on a server process: two hundred stalled
export streams, PostgreSQL stopped and started under load, SQLite's disk filled up, and
how long the event loop takes to answer Health/Check while the database is slow."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrigo.client import AsyncClient, CorrigoError
from corrigo.client.channel import async_interceptors
from corrigo.server.ops import memory
from corrigo.server.store import export_pages
from corrigo.v1 import admin_pb2, datasets_pb2, datasets_pb2_grpc, sources_pb2
from tests import dataset_helpers as h
from tests.processes import ServerProcess, WriteLock, bootstrapped_server
from tests.reliability import report

pytestmark = pytest.mark.heavy


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def rss_back_mb(pid: int, bound_mb: float) -> float:
    """The process's RSS once it is at most `bound_mb`, or after the server's memory trim
    (`memory.TRIM_SECONDS`) has had two rounds and a half: freed heap stays resident until
    a round hands it back."""
    deadline = time.monotonic() + 2.5 * memory.TRIM_SECONDS
    while (rss := rss_mb(pid)) > bound_mb and time.monotonic() < deadline:
        time.sleep(0.5)
    return rss


def fixed_window_channel(target: str, token: str) -> grpc.aio.Channel:
    """A channel whose HTTP/2 windows stay at their initial 64 KB (no BDP probing), so
    what a stalled stream was sent waits in the server, not in this process: the worst
    case, the same in every run (with probing, how much of it the client took depends
    on how fast the windows grew before it stopped reading)."""
    return grpc.aio.insecure_channel(
        target,
        options=[("grpc.http2.bdp_probe", 0)],
        interceptors=async_interceptors(token),
    )


@contextlib.asynccontextmanager
async def _filled(
    server: ServerProcess, token: str, comments: int, body_bytes: int
) -> AsyncIterator[tuple[AsyncClient, str]]:
    async with AsyncClient(server.target, token) as client:
        project = await client.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="p"))
        )
        source = await h.source(client, project.name, "src")
        await h.dataset(client, project.name, [source.id])
        text = "x" * body_bytes
        await h.sync(
            client, project.name, "src", [h.comment(f"c{i}", i, text) for i in range(comments)]
        )
        yield client, project.name


async def test_two_hundred_stalled_streams_starve_nothing(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    count = 200
    server, token = bootstrapped_server(scratch_db, tmp_path / "server.log", "st")
    with server:
        async with _filled(server, token, 1000, 1024) as (client, owner):
            request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=64)
            rss_start = rss_mb(server.process.pid)
            stalled = fixed_window_channel(server.target, token)
            stub = datasets_pb2_grpc.DatasetServiceStub(stalled)
            streams = [stub.StreamExportDataset(request) for _ in range(count)]
            firsts = await asyncio.gather(*(s.read() for s in streams))
            assert all(len(first.comments) == 64 for first in firsts)
            # Longer than a page read ahead is held for a client that does not read.
            await asyncio.sleep(2 * export_pages.AHEAD_HOLD_SECONDS)
            rss_stalled = rss_mb(server.process.pid)
            began = time.monotonic()
            for i in range(20):
                await client.datasets.CreateLabelDefs(h.label_defs(owner, [f"L{i}"]), timeout=5)
                got = await client.datasets.GetDataset(
                    datasets_pb2.GetDatasetRequest(owner=owner, name="ds"), timeout=5
                )
                assert got.dataset.name == "ds"
            answered_in = time.monotonic() - began
            for stream in streams:
                stream.cancel()
            await stalled.close()
            await asyncio.sleep(1)
            pages = [p async for p in client.datasets.StreamExportDataset(request)]
            assert sum(len(p.comments) for p in pages) == 1000
            rss_end = rss_back_mb(server.process.pid, rss_start + 30)
    assert answered_in < 5
    # A stalled stream holds the page it is sending (about 70 KB here), which grpc copies.
    assert rss_stalled - rss_start < 100, (rss_start, rss_stalled, rss_end)
    assert rss_end - rss_start < 30, (rss_start, rss_stalled, rss_end)
    report.record(
        "stalled streams",
        backend,
        streams=count,
        calls=40,
        seconds=round(answered_in, 2),
        rss_stalled=round(rss_stalled - rss_start, 1),
        rss_end=round(rss_end - rss_start, 1),
    )


def _cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _wait_ready() -> None:
    for _ in range(150):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("PostgreSQL did not come back")


async def _code(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except CorrigoError as error:
        return error.code.name
    return "OK"


async def test_postgres_restart_answers_unavailable_then_recovers(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("stops the PostgreSQL server")
    codes: Counter[str] = Counter()
    server, token = bootstrapped_server(scratch_db, tmp_path / "server.log", "st")
    with server:
        async with _filled(server, token, 300, 64) as (client, owner):
            get = datasets_pb2.GetDatasetRequest(owner=owner, name="ds")
            export = datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=50)
            stopping = asyncio.Event()

            async def load(i: int) -> None:
                n = 0
                while not stopping.is_set():
                    n += 1
                    calls = [
                        client.datasets.GetDataset(get, timeout=5),
                        client.datasets.CreateLabelDefs(
                            h.label_defs(owner, [f"L{i}-{n}"]), timeout=5
                        ),
                        client.datasets.ExportDataset(export, timeout=5),
                    ]
                    for call in calls:
                        codes[await _code(call)] += 1
                    await asyncio.sleep(0.01)

            stream = client.datasets.StreamExportDataset(
                datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=10)
            )
            await stream.read()
            workers = [asyncio.ensure_future(load(i)) for i in range(5)]
            await asyncio.sleep(1)
            try:
                _cluster("stop")
                await asyncio.sleep(2)
            finally:
                _cluster("start")
            _wait_ready()
            stream_code = await _code(_drain(stream))
            await asyncio.sleep(3)
            stopping.set()
            await asyncio.gather(*workers)
            # Stopped and started with no calls between: the first call still answers.
            _cluster("stop")
            _cluster("start")
            _wait_ready()
            first = await _code(client.datasets.GetDataset(get, timeout=10))
            after = [await _code(client.datasets.GetDataset(get, timeout=5)) for _ in range(5)]
        log = server.log()
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes["UNAVAILABLE"] > 0 and codes["OK"] > 0, codes
    assert stream_code in {"OK", "UNAVAILABLE"}
    assert first == "OK" and set(after) == {"OK"}, (first, after)
    assert "error id" not in log, log[-3000:]
    report.record(
        "database restart",
        backend,
        calls=sum(codes.values()),
        ok=codes["OK"],
        unavailable=codes["UNAVAILABLE"],
    )


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass


@contextlib.contextmanager
def _small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        check=False,
        capture_output=True,
    )
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"cannot mount a tmpfs: {mounted.stderr!r}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_sqlite_disk_full_answers_resource_exhausted_and_recovers(
    tmp_path: Path, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("fills the disk of a SQLite database")
    with _small_disk(tmp_path / "disk", 16) as disk:
        url = f"sqlite:///{disk / 'corrigo.sqlite3'}"
        server, token = bootstrapped_server(url, tmp_path / "server.log", "st")
        with server:
            async with _filled(server, token, 50, 64) as (client, owner):
                filler = disk / "filler"
                _fill(filler)
                big = "y" * 60_000
                failures: list[CorrigoError] = []
                for batch in range(40):
                    comments = [h.comment(f"b{batch}-{i}", i, big) for i in range(20)]
                    try:
                        await client.sources.SyncComments(
                            sources_pb2.SyncCommentsRequest(
                                owner=owner, name="src", comments=comments
                            )
                        )
                    except CorrigoError as error:
                        failures.append(error)
                        break
                assert failures, "the disk never filled"
                full = failures[0]
                assert (full.code, full.reason) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "STORAGE_FULL",
                ), full
                # Reads keep working.
                got = await client.datasets.GetDataset(
                    datasets_pb2.GetDatasetRequest(owner=owner, name="ds")
                )
                assert got.dataset.name == "ds"
                pages = await h.export_all(
                    client, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
                )
                before = len(h.uids(pages))
                filler.unlink()
                await h.sync(client, owner, "src", [h.comment("after", 1, "fits again")])
                pages = await h.export_all(
                    client, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
                )
                assert len(h.uids(pages)) == before + 1
            log = server.log()
    assert "disk is full" in log
    assert "error id" not in log
    report.record("disk full", backend, attempts=1, recovered=1)


def _fill(path: Path) -> None:
    """Write zeros to `path` until its disk is full."""
    with open(path, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()


def _evict(path: str) -> None:
    """Drop a SQLite database's files from the page cache."""
    for name in (path, f"{path}-wal"):
        if os.path.exists(name):
            fd = os.open(name, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


async def _counted(stream: object) -> int:
    comments = 0
    async for page in stream:  # type: ignore[attr-defined]
        comments += len(page.comments)
    return comments


async def _health_p99(target: str, seconds: float) -> tuple[float, int]:
    """The 99th percentile of Health/Check latency (ms) over `seconds`, one call at a
    time every 5 ms, and how many calls."""
    p99, _, calls = await _health_latencies(target, seconds)
    return p99, calls


async def _health_latencies(target: str, seconds: float) -> tuple[float, float, int]:
    """The 99th percentile and the maximum of Health/Check latency (ms) over `seconds`, one
    call at a time every 5 ms, and how many calls."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.005)
    latencies.sort()
    return latencies[int(len(latencies) * 0.99) - 1], latencies[-1], len(latencies)


async def test_the_event_loop_answers_while_the_database_is_slow(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    server, token = bootstrapped_server(scratch_db, tmp_path / "server.log", "st")
    with server:
        async with _filled(server, token, 3000, 2048) as (client, owner):
            get = datasets_pb2.GetDatasetRequest(owner=owner, name="ds")

            async def readers(stop: asyncio.Event) -> None:
                # About 100 calls a second each: a load the loop can carry, so the figure
                # shows waits on the database, not a queue of calls.
                while not stop.is_set():
                    await client.datasets.GetDataset(get, timeout=10)
                    await asyncio.sleep(0.01)

            stop = asyncio.Event()
            reading = [asyncio.ensure_future(readers(stop)) for _ in range(4)]
            idle_p99, _ = await _health_p99(server.target, 2)
            stop.set()
            await asyncio.gather(*reading)

            # (a) Another process holds the write lock; readers keep calling, a writer waits.
            stop = asyncio.Event()
            with WriteLock(scratch_db):
                writer = asyncio.ensure_future(
                    _code(client.datasets.CreateLabelDefs(h.label_defs(owner, ["W"]), timeout=8))
                )
                reading = [asyncio.ensure_future(readers(stop)) for _ in range(4)]
                locked_p99, locked_calls = await _health_p99(server.target, 3)
                stop.set()
                await asyncio.gather(*reading)
            await writer
            # (b) An export of a dataset whose file is not in the page cache.
            if backend == "sqlite":
                _evict(scratch_db[len("sqlite:///") :])
            request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=256)
            exporting = asyncio.ensure_future(_drain(client.datasets.StreamExportDataset(request)))
            cold_p99, cold_calls = await _health_p99(server.target, 2)
            await exporting
    report.record(
        "event loop",
        backend,
        locked_p99_ms=round(locked_p99, 1),
        locked_calls=locked_calls,
        cold_p99_ms=round(cold_p99, 1),
        cold_calls=cold_calls,
        idle_p99_ms=round(idle_p99, 1),
    )
    # A figure for the report, not a timed test: only a stall of the loop fails it.
    assert locked_p99 < 1000 and cold_p99 < 1000


async def _synced(client: AsyncClient, owner: str, source: str, count: int) -> None:
    """`count` small comments into `source`, through StreamSyncComments in full chunks."""
    chunk = 4096

    async def requests() -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
        for number, start in enumerate(range(0, count, chunk)):
            yield sources_pb2.StreamSyncCommentsRequest(
                owner=owner if number == 0 else "",
                name=source if number == 0 else "",
                chunk=number,
                comments=[h.comment(f"m{i}", i) for i in range(start, min(start + chunk, count))],
            )

    acknowledged = 0
    async for answer in client.sources.StreamSyncComments(requests(), timeout=600):
        acknowledged += answer.new
    assert acknowledged == count


@pytest.mark.timeout(900)  # a million comments to load first
async def test_health_answers_at_once_while_a_million_comments_are_exported_with_a_total(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    count = 1_000_000
    server, token = bootstrapped_server(scratch_db, tmp_path / "server.log", "st")
    with server:
        async with AsyncClient(server.target, token) as client:
            project = await client.admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="big"))
            )
            source = await h.source(client, project.name, "src")
            await h.dataset(client, project.name, [source.id])
            await _synced(client, project.name, "src", count)
            idle_p99, _, _ = await _health_latencies(server.target, 1)
            # Exports with their total, one after the other, for as long as Health is asked.
            stop = asyncio.Event()
            request = datasets_pb2.StreamExportDatasetRequest(
                owner=project.name, name="ds", limit=256, include_total=True
            )

            async def exporting() -> int:
                exports = 0
                while not stop.is_set():
                    call = client.datasets.StreamExportDataset(request)
                    first = await call.read()
                    assert first.total == count
                    call.cancel()
                    exports += 1
                return exports

            exporter = asyncio.ensure_future(exporting())
            p99, worst, calls = await _health_latencies(server.target, 5)
            stop.set()
            exports = await exporter
            # And while an export is read to its end.
            reading = asyncio.ensure_future(_counted(client.datasets.StreamExportDataset(request)))
            drained_p99, drained_worst, drained_calls = await _health_latencies(server.target, 3)
            reading.cancel()
            streamed = await asyncio.gather(reading, return_exceptions=True)
    report.record(
        "health while exporting",
        backend,
        comments=count,
        exports=exports,
        calls=calls + drained_calls,
        idle_p99_ms=round(idle_p99, 1),
        p99_ms=round(max(p99, drained_p99), 1),
        max_ms=round(max(worst, drained_worst), 1),
    )
    assert exports >= 1, streamed
    # Goals: p99 under 20 ms, maximum under 100 ms (a figure for the report; only a loop
    # stalled for a whole count, as before the loop rule, fails the test).
    assert max(worst, drained_worst) < 1000, (worst, drained_worst)
