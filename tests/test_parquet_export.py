"""`corrigo export --format parquet`: read back with pyarrow (and pandas) and compared
with the JSONL export of the same dataset; an interrupted export resumes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format

from corrigo.client import Client, parquet_export
from corrigo.client.export import export_to_file
from corrigo.v1 import datasets_pb2, models_pb2
from corrigo.v1.comments_pb2 import CommentMessage, Label, MessageText, PredictedLabel
from corrigo.v1.datasets_pb2 import ExportedComment, LabellingUpdate
from tests import dataset_helpers as h
from tests import full_records
from tests.conftest import Org
from tests.test_cli_datasets import _BreakingStub, _Interrupted, _state

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _dataset(org: Org, count: int) -> str:
    """A dataset `ds` of `count` varied comments, half labelled, all predicted."""
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    comments = []
    for i in range(count):
        made = h.comment(f"c{i}", i, f"body {i} \u2013 ☃" if i % 3 else "", thread_id=f"t{i % 7}")
        if i % 2:
            made.messages.append(
                CommentMessage(subject=MessageText(text="Re"), to=["x@y.z", "w@y.z"], cc=["c@y.z"])
            )
            made.messages[1].sent_at.FromMicroseconds(1_600_000_000_123_456 + i)
        made.user_properties.update({"string:Domain": f"d{i % 4}", "number:Priority": i % 5})
        comments.append(made)
    await h.sync(org.admin, owner, "mailbox", comments)
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner, name="ds", label_defs=[datasets_pb2.LabelDef(name="A > B")]
        )
    )
    await org.admin.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(
            owner=owner,
            name="ds",
            labellings=[
                LabellingUpdate(
                    comment_uid=f"{src.id}.c{i}",
                    assigned=[Label(name="A", sentiment="positive")],
                    dismissed=[Label(name="A > B", sentiment="negative")],
                )
                for i in range(0, count, 2)
            ],
        )
    )
    await h.predicted(
        org.admin,
        owner,
        "ds",
        [
            models_pb2.CommentPredictions(
                uid=f"{src.id}.c{i}",
                labels=[PredictedLabel(name="A > B", probability=0.5 + i / 1000, sentiment=-0.25)],
            )
            for i in range(count)
        ],
    )
    return owner


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        row["user_properties"] = json.loads(row["user_properties"])
    return rows


async def test_parquet_equals_the_jsonl_export(org: Org, tmp_path: Path) -> None:
    owner = await _dataset(org, 300)
    lines = tmp_path / "out.jsonl"
    table = tmp_path / "out.parquet"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(lines), "-q")
    assert code == 0, err
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(table), "--format", "parquet")
    assert code == 0, err
    assert "300 comments written" in err and not _state(table)
    expected = [
        json_format.Parse(line, ExportedComment()) for line in lines.read_text().splitlines()
    ]
    rows = pq.read_table(table).to_pylist()
    # Each row reads back as its JSONL line's result; a field one of them lacks is named.
    for line, row in zip(expected, rows, strict=True):
        assert full_records.differences(line, parquet_export.result_from_row(row)) == []
    # The layout: the comment's fields as columns, a message's subject as its text (None
    # when absent), Struct keys sorted, assigned labels and predictions beside them.
    assert rows[1]["messages"][1]["cc"] == ["c@y.z"] and rows[1]["messages"][0]["subject"] is None
    assert rows[0]["assigned"] == [{"name": "A", "sentiment": "positive"}]
    assert rows[0]["user_properties"] == '{"number:Priority":0.0,"string:Domain":"d0"}'
    # pandas reads it without help: one row per comment, nested columns as lists.
    frame = pq.read_table(table).to_pandas()
    assert len(frame) == 300 and list(frame["uid"]) == [e.comment.uid for e in expected]
    assert frame["predictions"][0][0]["name"] == "A > B"


async def test_interrupted_parquet_export_resumes_at_the_last_row_group(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await _dataset(org, 200)
    monkeypatch.setattr(parquet_export, "ROWS_PER_GROUP", 40)
    out = tmp_path / "resumed.parquet"
    request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=20)

    def run(breaking: bool) -> None:
        with Client(org.running.target, org.admin_token) as client:
            stub = _BreakingStub(client.datasets, 5 if breaking else 10**9, _Interrupted())
            export_to_file(stub, request, out, "parquet", progress=False)  # type: ignore[arg-type]

    with pytest.raises(_Interrupted):
        await asyncio.to_thread(run, True)
    state = _state(out)
    assert (state["parts"], state["written"]) == (2, 80)
    await asyncio.to_thread(run, False)
    assert _state(out) is None
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_row_groups == 5 and metadata.num_rows == 200
    whole = tmp_path / "whole.parquet"

    def uninterrupted() -> None:
        with Client(org.running.target, org.admin_token) as client:
            export_to_file(client.datasets, request, whole, "parquet", progress=False)

    await asyncio.to_thread(uninterrupted)
    assert _rows(out) == _rows(whole)
