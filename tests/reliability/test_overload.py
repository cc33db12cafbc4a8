"""Overload and limits: a concurrency cap answering RESOURCE_EXHAUSTED, deadlines that
stop database work, message size limits, and flow control for a stalled consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import admin_pb2, datasets_pb2, sources_pb2
from tests import dataset_helpers
from tests.processes import ServerProcess, WriteLock, bootstrap
from tests.reliability import report


def _start(url: str, tmp_path: Path, *extra: str) -> tuple[ServerProcess, str]:
    org = f"ov-{uuid.uuid4().hex[:8]}"
    token = bootstrap(url, org, f"admin@{org}.test")
    server = ServerProcess(url, tmp_path / f"{org}.log", extra=list(extra))
    server.wait_serving()
    return server, token


def _project(name: str) -> admin_pb2.CreateProjectRequest:
    return admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=name))


async def test_concurrency_cap_refuses_at_once_and_deadlines_stop_work(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    cap, burst = 4, 24
    server, token = _start(scratch_db, tmp_path, "--max-concurrent-rpcs", str(cap))
    try:
        async with AsyncClient(server.target, token) as client:
            await client.admin.WhoAmI(admin_pb2.WhoAmIRequest())  # token's last use recorded
            with WriteLock(scratch_db) as lock:
                held = [
                    asyncio.ensure_future(client.admin.CreateProject(_project(f"held-{i}")))
                    for i in range(cap)
                ]
                await asyncio.sleep(1)
                started = time.monotonic()
                answers = await asyncio.gather(
                    *(client.admin.WhoAmI(admin_pb2.WhoAmIRequest()) for _ in range(burst)),
                    return_exceptions=True,
                )
                refused_in = time.monotonic() - started
                exhausted = [
                    a
                    for a in answers
                    if isinstance(a, CorrigoError) and a.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                ]
                assert len(exhausted) == burst, answers
                assert refused_in < 5
                lock.release()
                created = await asyncio.wait_for(asyncio.gather(*held), 30)
            assert sorted(p.name for p in created) == [f"held-{i}" for i in range(cap)]

            with WriteLock(scratch_db) as lock:
                with pytest.raises(CorrigoError) as err:
                    await client.admin.CreateProject(_project("too-late"), timeout=1)
                assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
                # The server's deadline is the same instant seen a few milliseconds later
                # (the call reached it after it left the client): released at once, the
                # lock could let the write finish inside the server's deadline, which is
                # not late. Past both, the write must never happen.
                await asyncio.sleep(0.5)
                lock.release()
            await asyncio.sleep(2)
            listed = await client.admin.ListProjects(admin_pb2.ListProjectsRequest())
            assert "too-late" not in [p.name for p in listed.projects]
    finally:
        assert server.stop() == 0
    report.record("overload", backend, burst=burst, cap=cap, exhausted=len(exhausted))


async def test_oversized_messages_are_refused(scratch_db: str, tmp_path: Path) -> None:
    limit = 1024 * 1024
    server, token = _start(scratch_db, tmp_path, "--max-message-bytes", str(limit))
    try:
        async with AsyncClient(server.target, token) as client:
            project = await client.admin.CreateProject(_project("big"))
            await dataset_helpers.source(client, project.name, "inbox")
            huge = [dataset_helpers.comment(f"c{i}", text="x" * 200_000) for i in range(8)]
            with pytest.raises(CorrigoError) as err:
                await client.sources.SyncComments(
                    sources_pb2.SyncCommentsRequest(owner=project.name, name="inbox", comments=huge)
                )
            assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            # The server is unharmed and still answers.
            await client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    finally:
        assert server.stop() == 0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_stalled_stream_consumer_does_not_grow_server_memory(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    comments = int(10000 * max(1.0, report.scale()))
    server, token = _start(scratch_db, tmp_path)
    try:
        async with AsyncClient(server.target, token) as client:
            project = await client.admin.CreateProject(_project("flow"))
            source = await dataset_helpers.source(client, project.name, "inbox")
            await dataset_helpers.dataset(client, project.name, [source.id], "ds")
            body = "b" * 8000
            for start in range(0, comments, 1000):  # 8 MB a call, under the 16 MiB limit
                await dataset_helpers.sync(
                    client,
                    project.name,
                    "inbox",
                    [
                        dataset_helpers.comment(f"c{i}", i, text=body)
                        for i in range(start, min(start + 1000, comments))
                    ],
                )
            before = _rss_kb(server.process.pid)
            stream = client.datasets.StreamExportDataset(
                datasets_pb2.ExportDatasetRequest(owner=project.name, name="ds", limit=256)
            )
            first = await stream.read()
            assert len(first.comments) == 256
            # Transport windows and read-ahead fill within the first seconds; after that a
            # stalled consumer must not make the server hold any more.
            await asyncio.sleep(3)
            settled = _rss_kb(server.process.pid)
            await asyncio.sleep(3)
            stalled = _rss_kb(server.process.pid)
            stream.cancel()
    finally:
        assert server.stop() == 0
    growth_mb = (stalled - before) / 1024
    dataset_mb = comments * len(body) / 1024 / 1024
    # Flow control holds the producer: while the consumer stalls the server stops reading,
    # and what it holds is a few pages, not the dataset.
    assert (stalled - settled) / 1024 < 4, (settled, stalled)
    assert growth_mb < min(64, dataset_mb), (growth_mb, dataset_mb)
    report.record("overload", backend, rss_growth_mb=round(max(growth_mb, 0.0), 1))
