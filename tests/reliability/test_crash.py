"""Crash durability: a server killed with SIGKILL at random moments during bulk sync,
labelling and batch scheduling, then restarted. Every write the client saw acknowledged
is present, no sync is half-written, and SQLite passes `PRAGMA integrity_check`."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import admin_pb2, datasets_pb2, improvement_pb2, practice_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label
from corrigo.v1.practice_pb2 import PracticeEvent
from tests import dataset_helpers
from tests.processes import ServerProcess, bootstrapped_server
from tests.reliability import report

pytestmark = pytest.mark.heavy

SYNC_SIZE = 100


@dataclass
class Ledger:
    """What was attempted, and what the server acknowledged."""

    syncs_tried: set[str] = field(default_factory=set)
    syncs_acked: set[str] = field(default_factory=set)
    labelled: set[str] = field(default_factory=set)
    scheduled: dict[int, tuple[str, int]] = field(default_factory=dict)  # session -> batch, number
    synced_ids: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return len(self.syncs_acked) + len(self.labelled) + len(self.scheduled)


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            return conn.execute(sql).fetchall()
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


async def _writer(
    client: AsyncClient, owner: str, source_hex: str, sessions: list[int], ledger: Ledger, tag: str
) -> None:
    """Writes until the server dies: syncs, labellings and schedules in turn."""
    for call in range(10**6):
        kind = call % 3
        try:
            if kind == 0 or not ledger.synced_ids:
                prefix = f"{tag}c{call}n"
                ledger.syncs_tried.add(prefix)
                await client.sources.SyncComments(
                    sources_pb2.SyncCommentsRequest(
                        owner=owner,
                        name="inbox",
                        comments=[
                            dataset_helpers.comment(f"{prefix}{i}", call) for i in range(SYNC_SIZE)
                        ],
                    ),
                    timeout=10,
                )
                ledger.syncs_acked.add(prefix)
                ledger.synced_ids.append(f"{prefix}0")
            elif kind == 1:
                comment_id = random.choice(ledger.synced_ids)
                await client.datasets.UpdateLabelling(
                    datasets_pb2.UpdateLabellingRequest(
                        owner=owner,
                        name="ds",
                        comment_uid=f"{source_hex}.{comment_id}",
                        assigned=[Label(name="Kept", sentiment="positive")],
                    ),
                    timeout=10,
                )
                ledger.labelled.add(comment_id)
            elif sessions:
                session_id = sessions.pop()
                placed = await client.improvement.UseSessionForImprovement(
                    improvement_pb2.UseSessionForImprovementRequest(session_id=session_id),
                    timeout=10,
                )
                ledger.scheduled[session_id] = (placed.batch_id, placed.number)
        except CorrigoError:
            return  # the server is gone; what was in flight is not acknowledged


async def schedulable_sessions(client: AsyncClient, count: int, text_size: int = 1) -> list[int]:
    """Sessions ready to schedule: a prompt and its answer, each `text_size` characters."""
    ids = []
    for _ in range(count):
        session = await client.practice.CreatePracticeSession(
            practice_pb2.CreatePracticeSessionRequest()
        )
        await client.practice.AppendEvents(
            practice_pb2.AppendEventsRequest(
                session_id=session.session_id,
                events=[
                    PracticeEvent(type=PracticeEvent.PROMPT, text="q" * text_size),
                    PracticeEvent(type=PracticeEvent.RESPONSE, text="a" * text_size),
                ],
            )
        )
        ids.append(session.session_id)
    return ids


def _verify(url: str, ledger: Ledger) -> int:
    """Checks the database after a restart; answers the number of half-written syncs."""
    present: dict[str, int] = defaultdict(int)
    for (comment_id,) in _query(url, "SELECT comment_id FROM comment"):
        present[str(comment_id).rstrip("0123456789")] += 1
    half_written = [p for p in ledger.syncs_tried if present.get(p, 0) not in (0, SYNC_SIZE)]
    missing_syncs = [p for p in ledger.syncs_acked if present.get(p, 0) != SYNC_SIZE]
    assert missing_syncs == [], missing_syncs
    labelled = {
        str(row[0])
        for row in _query(
            url, "SELECT c.comment_id FROM labelling l JOIN comment c ON c.id = l.comment_id"
        )
    }
    assert ledger.labelled <= labelled, ledger.labelled - labelled
    entries = {
        int(session): (str(batch), int(number))
        for session, batch, number in _query(
            url,
            "SELECT e.session_id, b.batch_key, e.number FROM improvement_entry e "
            "JOIN improvement_batch b ON b.id = e.batch_id",
        )
    }
    for session, placed in ledger.scheduled.items():
        assert entries.get(session) == placed, (session, placed, entries.get(session))
    numbers: dict[str, list[int]] = defaultdict(list)
    for batch, number in entries.values():
        numbers[batch].append(number)
    for batch, seen in numbers.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), (batch, sorted(seen))
    return len(half_written)


async def test_sigkill_loses_no_acknowledged_write(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    kills = max(3, int(4 * report.scale()))
    server, token = bootstrapped_server(scratch_db, tmp_path / "server-0.log", "crash")
    ledger = Ledger()
    half_written = integrity_ok = integrity_checks = 0
    async with AsyncClient(server.target, token) as client:
        created = await client.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="crash"))
        )
        project = created.name
        source = await dataset_helpers.source(client, project, "inbox")
        await dataset_helpers.dataset(client, project, [source.id], "ds")
        await client.datasets.CreateLabelDefs(
            datasets_pb2.CreateLabelDefsRequest(
                owner=project, name="ds", label_defs=[datasets_pb2.LabelDef(name="Kept")]
            )
        )
        sessions = await schedulable_sessions(client, 12 * kills)
    for kill in range(kills):
        async with AsyncClient(server.target, token) as client:
            writers = [
                asyncio.ensure_future(
                    _writer(client, project, source.id, sessions, ledger, f"k{kill}w{w}")
                )
                for w in range(2)
            ]
            await asyncio.sleep(random.uniform(0.3, 2.0))
            server.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*writers), 30)
        server.stop()
        if scratch_db.startswith("sqlite:///"):
            integrity_checks += 1
            integrity_ok += _query(scratch_db, "PRAGMA integrity_check") == [("ok",)]
        server = ServerProcess(scratch_db, tmp_path / f"server-{kill + 1}.log")
        server.wait_serving()
        half_written += _verify(scratch_db, ledger)
    assert server.stop() == 0
    assert half_written == 0
    assert integrity_ok == integrity_checks
    assert ledger.acknowledged > kills
    report.record(
        "crash durability",
        backend,
        kills=kills,
        acknowledged=ledger.acknowledged,
        partial=half_written,
        integrity_ok=integrity_ok,
        integrity_checks=integrity_checks,
    )
