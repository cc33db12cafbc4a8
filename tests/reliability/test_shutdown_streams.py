"""SIGTERM while export and batch streams run: health turns NOT_SERVING, each stream
finishes within the grace period or ends UNAVAILABLE, and the client resumes from its
last continuation (or number) on the restarted server with nothing missing or repeated."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import admin_pb2, datasets_pb2, improvement_pb2
from tests import dataset_helpers
from tests.processes import ServerProcess, bootstrap, bootstrapped_server
from tests.reliability import report
from tests.reliability.test_crash import schedulable_sessions

pytestmark = pytest.mark.heavy

COMMENTS = 3000
SESSIONS = 40


async def _read_export(
    client: AsyncClient, owner: str, continuation: str, seen: list[str]
) -> tuple[str, grpc.StatusCode]:
    """Reads slowly until the stream ends; answers the last continuation and the end code."""
    stream = client.datasets.StreamExportDataset(
        datasets_pb2.StreamExportDatasetRequest(
            owner=owner, name="ds", limit=32, continuation=continuation
        )
    )
    try:
        async for page in stream:
            seen.extend(c.comment.id for c in page.comments)
            continuation = page.continuation
            if not continuation:
                return "", grpc.StatusCode.OK
            await asyncio.sleep(0.04)
    except CorrigoError as error:
        return continuation, error.code
    return continuation, grpc.StatusCode.OK


async def _read_batch(
    client: AsyncClient, after: int, seen: list[int]
) -> tuple[int, grpc.StatusCode]:
    stream = client.improvement.StreamBatchSessions(
        improvement_pb2.StreamBatchSessionsRequest(after_number=after, limit=1)
    )
    try:
        async for page in stream:
            seen.extend(s.number for s in page.sessions)
            after = page.last_number or after
            await asyncio.sleep(0.08)
    except CorrigoError as error:
        return after, error.code
    return after, grpc.StatusCode.OK


async def test_sigterm_mid_stream_then_resume(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    shutdowns = max(2, int(2 * report.scale()))
    org = f"term-{uuid.uuid4().hex[:8]}"
    token = bootstrap(scratch_db, org, f"admin@{org}.test")
    server = ServerProcess(scratch_db, tmp_path / "server-0.log", grace=1)
    server.wait_serving()
    async with AsyncClient(server.target, token) as client:
        project = (
            await client.admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="term"))
            )
        ).name
        source = await dataset_helpers.source(client, project, "inbox")
        await dataset_helpers.dataset(client, project, [source.id], "ds")
        await dataset_helpers.sync(
            client,
            project,
            "inbox",
            [dataset_helpers.comment(f"c{i:05}", i) for i in range(COMMENTS)],
        )
        for session_id in await schedulable_sessions(client, SESSIONS, text_size=100_000):
            await client.improvement.UseSessionForImprovement(
                improvement_pb2.UseSessionForImprovementRequest(session_id=session_id)
            )
    expected_export = [f"c{i:05}" for i in range(COMMENTS)]
    expected_numbers = list(range(1, SESSIONS + 1))
    # Each stream is read from the start, resumed after every cut, and checked whole when
    # it completes; then a fresh read begins, so every shutdown has both streams running.
    exported: list[str] = []
    numbers: list[int] = []
    continuation, after = "", 0
    cut = completed = 0
    for round_ in range(shutdowns + 1):
        async with (
            AsyncClient(server.target, token) as client,
            grpc.aio.insecure_channel(server.target) as health_channel,
        ):
            watch = health_pb2_grpc.HealthStub(health_channel).Watch(
                health_pb2.HealthCheckRequest()
            )
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            export = asyncio.ensure_future(_read_export(client, project, continuation, exported))
            batch = asyncio.ensure_future(_read_batch(client, after, numbers))
            if round_ < shutdowns:
                start_export, start_batch = len(exported), len(numbers)
                for _ in range(200):
                    if len(exported) > start_export and len(numbers) > start_batch:
                        break
                    await asyncio.sleep(0.02)
                server.process.send_signal(signal.SIGTERM)
                changed = await asyncio.wait_for(watch.read(), 10)
                assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING
            (continuation, export_code), (after, batch_code) = await asyncio.wait_for(
                asyncio.gather(export, batch), 60
            )
        for code in (export_code, batch_code):
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE), code
            cut += code == grpc.StatusCode.UNAVAILABLE
        if export_code == grpc.StatusCode.OK:
            assert exported == expected_export
            exported, continuation, completed = [], "", completed + 1
        if batch_code == grpc.StatusCode.OK:
            assert numbers == expected_numbers
            numbers, after, completed = [], 0, completed + 1
        assert server.stop() == 0
        if round_ < shutdowns:
            server = ServerProcess(scratch_db, tmp_path / f"server-{round_ + 1}.log", grace=1)
            server.wait_serving()
    # The last round ran without a shutdown, so every read was completed and checked.
    assert exported == [] and numbers == []
    assert cut > 0, "no stream was cut by a shutdown: the test proved nothing"
    report.record(
        "shutdown mid-stream",
        backend,
        shutdowns=shutdowns,
        streams=2 * shutdowns,
        resumed=cut,
        completed=completed,
    )


async def test_sigterm_ends_follow_streams_at_once_and_they_resume(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    # A grace far longer than the test: a follower that held the shutdown would show.
    server, token = bootstrapped_server(
        scratch_db, tmp_path / "server-1.log", "fterm", extra=["--grace", "120"]
    )
    async with AsyncClient(server.target, token) as client:
        project = (
            await client.admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="fterm"))
            )
        ).name
        source = await dataset_helpers.source(client, project, "inbox")
        await dataset_helpers.dataset(client, project, [source.id], "ds")
        await dataset_helpers.sync(client, project, "inbox", [dataset_helpers.comment("c0", 0)])
        request = datasets_pb2.StreamExportDatasetRequest(owner=project, name="ds", follow=True)
        stream = client.datasets.StreamExportDataset(request)
        messages = aiter(stream)
        while not (last := await anext(messages)).live:
            pass
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(CorrigoError) as ended:
            while True:
                last = await asyncio.wait_for(anext(messages), 60)
    assert ended.value.code == grpc.StatusCode.UNAVAILABLE
    assert ended.value.reason == "SERVER_STOPPING"
    assert server.stop() == 0
    stop_seconds = time.monotonic() - stopped_at
    # Resumed on the restarted server from the last continuation.
    server = ServerProcess(scratch_db, tmp_path / "server-2.log")
    with server:
        server.wait_serving()
        async with AsyncClient(server.target, token) as client:
            request.continuation = last.continuation
            resumed = aiter(client.datasets.StreamExportDataset(request))
            await dataset_helpers.sync(client, project, "inbox", [dataset_helpers.comment("c1", 1)])
            while not (change := await asyncio.wait_for(anext(resumed), 30)).comments:
                pass
            assert [c.comment.id for c in change.comments] == ["c1"]
    report.record("shutdown of followers", backend, grace=120, stop_seconds=round(stop_seconds, 2))
