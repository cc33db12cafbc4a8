"""Deleting a label, a dataset and a source of 1,000,000 comments on a server process: each
delete answers at once (the label leaves every labelling for readers, the dataset and source
free their names), and while the labellings are pruned and the rows purged in the
background, writes with a 1 s deadline keep answering OK."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corrigo.client import AsyncClient
from corrigo.server.store import database
from corrigo.v1 import admin_pb2, datasets_pb2, sources_pb2
from corrigo.v1.comments_pb2 import AssignedLabels, Label
from tests import dataset_helpers as h
from tests.processes import bootstrapped_server
from tests.reliability import report

pytestmark = pytest.mark.heavy

COMMENTS = 1_000_000

# Rows written straight into the tables, as fast as each database takes them: the
# comments of source `?` and their labellings in dataset `?`.
_SQLITE_FILL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
    'INSERT INTO "comment" (source_id, comment_id, ts_us, created_us, content_hash, body) '
    "SELECT ?, printf('c%07d', i), i, i, 'h', ? FROM n",
    "INSERT INTO labelling (dataset_id, comment_id, assigned, dismissed, updated_at) "
    "SELECT ?, id, ?, x'', '2024-01-01 00:00:00' FROM \"comment\" WHERE source_id = ?",
)
_POSTGRES_FILL = (
    'INSERT INTO "comment" (source_id, comment_id, ts_us, created_us, content_hash, body) '
    "SELECT %s, 'c' || lpad(i::text, 7, '0'), i, i, 'h', %s FROM generate_series(1, {count}) AS i",
    "INSERT INTO labelling (dataset_id, comment_id, assigned, dismissed, updated_at) "
    "SELECT %s, id, %s, '', '2024-01-01' FROM \"comment\" WHERE source_id = %s",
)


def _sql(url: str) -> Callable[[str, tuple[Any, ...]], list[Any]]:
    """A way to run statements on the server's database beside it (each committed)."""
    if url.startswith("sqlite"):
        path = database.sqlite_path(url)

        def lite(sql: str, params: tuple[Any, ...]) -> list[Any]:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()

        return lite
    import psycopg2

    def postgres(sql: str, params: tuple[Any, ...]) -> list[Any]:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    return postgres


async def _writes_while(
    client: AsyncClient, owner: str, prefix: str, done: Callable[[], bool], limit: float
) -> tuple[int, float]:
    """SyncComments with a 1 s deadline every 0.1 s until `done()`: (calls, slowest s)."""
    calls, slowest = 0, 0.0
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "the purge did not finish"
        began = time.monotonic()
        answer = await client.sources.SyncComments(
            sources_pb2.SyncCommentsRequest(
                owner=owner, name="live", comments=[h.comment(f"{prefix}{calls}", calls)]
            ),
            timeout=1,
        )
        assert answer.new == 1
        slowest = max(slowest, time.monotonic() - began)
        calls += 1
        await asyncio.sleep(0.1)
    return calls, slowest


# Filling and purging two million rows takes minutes, not the suite's default 120 s.
@pytest.mark.timeout(1800)
async def test_deleting_a_million_comments_leaves_writes_answering(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    run = _sql(scratch_db)
    # A deleted label's pruning starts four statement limits after the delete.
    server, token = bootstrapped_server(
        scratch_db, tmp_path / "server.log", "pu", ["--statement-timeout", "2"]
    )
    with server:
        async with AsyncClient(server.target, token) as client:
            project = await client.admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="p"))
            )
            owner = project.name
            big = await h.source(client, owner, "big")
            await h.source(client, owner, "live")
            await h.dataset(client, owner, [big.id])
            [(source_id,)] = run("SELECT id FROM source WHERE hex_id = ?", (big.id,))
            [(dataset_id,)] = run("SELECT id FROM dataset WHERE name = 'ds'", ())
            fill = _SQLITE_FILL if backend == "sqlite" else _POSTGRES_FILL
            body = h.comment("c").SerializeToString()
            await client.datasets.CreateLabelDefs(h.label_defs(owner, ["L", "M > x"]))
            labels = AssignedLabels(
                assigned=[Label(name="L"), Label(name="M > x")]
            ).SerializeToString()
            began = time.monotonic()
            run(fill[0].format(count=COMMENTS), (source_id, body))
            run(fill[1], (dataset_id, labels, source_id))
            if backend == "postgres":
                run("ANALYZE", ())
            filled = time.monotonic() - began

            figures: dict[str, float] = {}
            began = time.monotonic()
            await client.datasets.DeleteLabelDef(
                datasets_pb2.DeleteLabelDefRequest(owner=owner, name="ds", label_name="M"),
                timeout=5,
            )
            figures["label_delete_ms"] = round((time.monotonic() - began) * 1000, 1)
            first = await client.datasets.ExportDataset(
                datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=8), timeout=5
            )
            shown = {tuple(x.name for x in c.annotations.labels.assigned) for c in first.comments}
            assert shown == {("L",)}, shown

            def pruned() -> bool:
                return run("SELECT COUNT(*) FROM purge WHERE kind = 'label'", ())[0][0] == 0

            calls, slowest = await _writes_while(client, owner, "label", pruned, 1200)
            figures["label_prune_rows_per_s"] = round(COMMENTS / (time.monotonic() - began))
            figures["label_writes"] = calls
            figures["label_slowest_write_ms"] = round(slowest * 1000, 1)
            only_l = AssignedLabels(assigned=[Label(name="L")]).SerializeToString()
            kept = run("SELECT COUNT(*) FROM labelling WHERE assigned = ?", (only_l,))
            assert kept[0][0] == COMMENTS

            for kind, row_id, delete in (
                (
                    "dataset",
                    dataset_id,
                    lambda: client.datasets.DeleteDataset(
                        datasets_pb2.DeleteDatasetRequest(owner=owner, name="ds"), timeout=5
                    ),
                ),
                (
                    "source",
                    source_id,
                    lambda: client.sources.DeleteSource(
                        sources_pb2.DeleteSourceRequest(owner=owner, name="big"), timeout=5
                    ),
                ),
            ):
                began = time.monotonic()
                await delete()
                figures[f"{kind}_delete_ms"] = round((time.monotonic() - began) * 1000, 1)
                # The name is free at once.
                if kind == "dataset":
                    await h.dataset(client, owner, [])
                else:
                    await h.source(client, owner, "big")

                def done(kind: str = kind, row_id: int = row_id) -> bool:
                    pending = "SELECT COUNT(*) FROM purge WHERE kind = ? AND row_id = ?"
                    return run(pending, (kind, row_id))[0][0] == 0

                calls, slowest = await _writes_while(client, owner, kind, done, 1200)
                seconds = time.monotonic() - began
                figures[f"{kind}_purge_rows_per_s"] = round(COMMENTS / seconds)
                figures[f"{kind}_writes"] = calls
                figures[f"{kind}_slowest_write_ms"] = round(slowest * 1000, 1)
            left = run('SELECT COUNT(*) FROM "comment" WHERE source_id = ?', (source_id,))
            assert left[0][0] == 0
            assert run("SELECT COUNT(*) FROM labelling", ())[0][0] == 0
    for kind in ("label", "dataset", "source"):
        assert figures[f"{kind}_delete_ms"] < 1000, figures
    report.record("deferred delete", backend, comments=COMMENTS, fill_s=round(filled), **figures)
