"""Two server processes on one PostgreSQL database: an export started on one replica and
resumed on the other yields exactly the same comments; concurrent writes through both
lose nothing; batch numbers stay unique and gap-free."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from corrigo.client import AsyncClient
from corrigo.v1 import admin_pb2, datasets_pb2, improvement_pb2
from tests import dataset_helpers
from tests.processes import ServerProcess, bootstrap
from tests.reliability import report
from tests.reliability.test_crash import _query, schedulable_sessions

pytestmark = pytest.mark.heavy


async def test_two_replicas_share_exports_writes_and_numbers(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; SQLite is the single-process default")
    org = f"rep-{uuid.uuid4().hex[:8]}"
    token = bootstrap(scratch_db, org, f"admin@{org}.test")
    servers = [ServerProcess(scratch_db, tmp_path / f"replica-{i}.log") for i in range(2)]
    for server in servers:
        server.wait_serving()
    writers, batches, schedules = 2, int(10 * max(1.0, report.scale())), 60
    try:
        async with (
            AsyncClient(servers[0].target, token) as one,
            AsyncClient(servers[1].target, token) as two,
        ):
            project = (
                await one.admin.CreateProject(
                    admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="rep"))
                )
            ).name
            source = await dataset_helpers.source(one, project, "inbox")
            await dataset_helpers.dataset(two, project, [source.id], "ds")

            async def write(client: AsyncClient, tag: str) -> None:
                for batch in range(batches):
                    await dataset_helpers.sync(
                        client,
                        project,
                        "inbox",
                        [dataset_helpers.comment(f"{tag}-{batch}-{i}", batch) for i in range(50)],
                    )

            await asyncio.gather(write(one, "a"), write(two, "b"))
            stored = _query(scratch_db, "SELECT COUNT(*) FROM comment")[0][0]
            assert stored == writers * batches * 50

            request = datasets_pb2.ExportDatasetRequest(owner=project, name="ds", limit=64)
            first = await one.datasets.ExportDataset(request)
            resumed = await dataset_helpers.export_all(
                two,
                datasets_pb2.ExportDatasetRequest(
                    owner=project, name="ds", limit=64, continuation=first.continuation
                ),
            )
            everything = await dataset_helpers.export_all(
                one, datasets_pb2.ExportDatasetRequest(owner=project, name="ds", limit=64)
            )
            stitched = [c.comment.uid for c in first.comments] + dataset_helpers.uids(resumed)
            assert stitched == dataset_helpers.uids(everything)
            assert len(set(stitched)) == len(stitched) == stored

            session_ids = await schedulable_sessions(one, schedules)
            placed = await asyncio.gather(
                *(
                    (one if i % 2 else two).improvement.UseSessionForImprovement(
                        improvement_pb2.UseSessionForImprovementRequest(session_id=session_id)
                    )
                    for i, session_id in enumerate(session_ids)
                )
            )
            assert sorted(p.number for p in placed) == list(range(1, schedules + 1))
            assert len({p.batch_id for p in placed}) == 1
    finally:
        for server in servers:
            assert server.stop() == 0
    report.record("two replicas", backend, writes=writers * batches, schedules=schedules)
