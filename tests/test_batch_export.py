"""`corrigo batch sessions` to stdout, and to JSONL and Parquet files: the same sessions
as json_format writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format

from corrigo.client import batch_export
from corrigo.v1 import improvement_pb2
from corrigo.v1.practice_pb2 import PracticeEvent
from tests.conftest import Org
from tests.test_improvement import chat, use

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_batch_sessions_to_files(org: Org, tmp_path: Path) -> None:
    kinds = (PracticeEvent.PROMPT, PracticeEvent.RESPONSE, PracticeEvent.RATING, PracticeEvent.NOTE)
    for n in range(5):
        await use(org.admin, await chat(org.admin, events=kinds[: 2 + n % 3]))
    answer = await org.admin.improvement.GetBatchSessions(
        improvement_pb2.GetBatchSessionsRequest(limit=100)
    )
    expected = [
        json_format.MessageToJson(s, preserving_proto_field_name=True, indent=None)
        for s in answer.sessions
    ]
    assert [batch_export.session_line(s) for s in answer.sessions] == expected

    code, out, err = await org.cli("batch", "sessions", "--limit", "2")
    assert code == 0, err
    assert out.splitlines() == expected
    lines = tmp_path / "batch.jsonl"
    code, _, err = await org.cli("batch", "sessions", "-o", str(lines))
    assert code == 0 and "5 sessions written" in err, err
    assert lines.read_text().splitlines() == expected

    table = tmp_path / "batch.parquet"
    code, _, err = await org.cli("batch", "sessions", "-o", str(table), "--format", "parquet")
    assert code == 0 and "5 sessions written" in err, err
    rows = pq.read_table(table).to_pylist()
    for row, line in zip(rows, expected, strict=True):
        data = json.loads(line)
        assert row["number"] == data["number"]
        assert row["scheduled_at"] == data["scheduled_at"]
        assert json.loads(row["session"]) == data["session"]
        assert [e["type"] for e in row["events"]] == [e["type"] for e in data.get("events", [])]
        assert [e["text"] for e in row["events"]] == [
            e.get("text", "") for e in data.get("events", [])
        ]
    assert len(rows) == 5 and rows[4]["events"]
