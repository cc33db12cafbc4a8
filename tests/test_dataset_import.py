"""`corrigo import`: export a dataset, import the file into another organization's
fresh project, export again: the same comments, labels and predictions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format

from corrigo.client import fields, parquet_export, records
from corrigo.client.sync import SERVER_FIELDS
from corrigo.v1 import datasets_pb2, models_pb2
from corrigo.v1.comments_pb2 import Comment, Label, PredictedLabel
from corrigo.v1.datasets_pb2 import ExportedComment
from tests import dataset_helpers as h
from tests import full_records
from tests.conftest import Org
from tests.test_parquet_export import _dataset

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _portable(path: Path) -> list[dict[str, Any]]:
    """An export's lines without what names the server's sources and times."""
    lines = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        for name in SERVER_FIELDS:  # the server's own: not carried over
            data["comment"].pop(name, None)
        lines.append(data)
    return sorted(lines, key=lambda d: d["comment"]["id"])


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_export_import_export_round_trip(
    org: Org, other_org: Org, tmp_path: Path, fmt: str
) -> None:
    owner = await _dataset(org, 120)
    exported = tmp_path / "first.jsonl"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(exported), "-q")
    assert code == 0, err
    moved = tmp_path / f"moved.{fmt}"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(moved), "--format", fmt, "-q")
    assert code == 0, err

    target = await other_org.project()
    code, _, err = await other_org.cli(
        "import", f"{target.name}/copy", str(moved), "--new-model", "imported", "-q"
    )
    assert code == 0, err
    assert "120 comments into 1 sources, 60 labellings, 120 predictions" in err
    again = tmp_path / "again.jsonl"
    code, _, err = await other_org.cli("export", f"{target.name}/copy", "-o", str(again), "-q")
    assert code == 0, err
    first, second = _portable(exported), _portable(again)
    assert second == first
    assert any("annotations" in d for d in second) and all("predictions" in d for d in second)

    # Importing again changes nothing (and keeps the predictions' version).
    code, _, err = await other_org.cli(
        "import", f"{target.name}/copy", str(moved), "--model-version", "1", "-q"
    )
    assert code == 0, err
    code, _, err = await other_org.cli("export", f"{target.name}/copy", "-o", str(again), "-q")
    assert _portable(again) == first


async def test_import_without_a_model_version_skips_predictions(
    org: Org, other_org: Org, tmp_path: Path
) -> None:
    owner = await _dataset(org, 10)
    moved = tmp_path / "moved.jsonl"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(moved), "-q")
    assert code == 0, err
    target = await other_org.project()
    code, _, err = await other_org.cli("import", f"{target.name}/copy", str(moved), "-q")
    assert code == 0, err
    assert "10 comments' predictions skipped" in err
    moved.write_text('{"comment": {"id": 5}}\n')
    code, _, err = await other_org.cli("import", f"{target.name}/copy", str(moved), "-q")
    assert code == 1 and f"{moved}:1:" in err


def _synced_part(result: ExportedComment) -> ExportedComment:
    """The result less the fields the server sets."""
    made = ExportedComment()
    made.CopyFrom(result)
    fields.clear_output_only(made.comment)
    return made


def _read(path: Path) -> ExportedComment:
    """The one result of an export file."""
    if path.suffix == ".parquet":
        (row,) = pq.read_table(path).to_pylist()
        return parquet_export.result_from_row(row)
    (line,) = path.read_text().splitlines()
    return json_format.Parse(line, ExportedComment())


async def _exported(org: Org, dataset: str, path: Path) -> ExportedComment:
    fmt = path.suffix.lstrip(".")
    code, _, err = await org.cli("export", dataset, "-o", str(path), "--format", fmt, "-q")
    assert code == 0, err
    return await asyncio.to_thread(_read, path)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_every_field_goes_through_sync_export_and_import(
    org: Org, other_org: Org, tmp_path: Path, fmt: str
) -> None:
    """A comment, its labels and predictions with every field set (from the descriptors),
    synced by `corrigo sync`, exported, imported into another organization and exported
    again: every field comes back, and the server sets every field the protos say it
    sets. A field new to the protos that any step drops is named."""
    values = full_records.synced_values()
    comment = full_records.full_comment()
    labels = full_records.full(Label, values)
    predicted = full_records.full(PredictedLabel, values)
    project = await org.project()
    owner = project.name
    source = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [source.id])
    lines = tmp_path / "comments.jsonl"
    await asyncio.to_thread(
        lines.write_text, records.exported_line(ExportedComment(comment=comment)) + "\n"
    )
    code, _, err = await org.cli("sync", f"{owner}/mailbox", str(lines), "-q")
    assert code == 0, err
    names = sorted({label.name for label in labels})  # type: ignore[attr-defined]
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner, name="ds", label_defs=[datasets_pb2.LabelDef(name=n) for n in names]
        )
    )
    uid = f"{source.id}.{comment.id}"
    await org.admin.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(
            owner=owner,
            name="ds",
            labellings=[datasets_pb2.LabellingUpdate(comment_uid=uid, assigned=labels)],
        )
    )
    await h.predicted(
        org.admin, owner, "ds", [models_pb2.CommentPredictions(uid=uid, labels=predicted)]
    )
    expected = ExportedComment(comment=comment)
    expected.annotations.labels.assigned.extend(labels)
    expected.predictions.labels.extend(predicted)

    first = await _exported(org, f"{owner}/ds", tmp_path / f"first.{fmt}")
    assert full_records.differences(_synced_part(expected), _synced_part(first)) == []
    server_set = fields.Held(fields.output_only(Comment.DESCRIPTOR))
    assert server_set.missing(first.comment) == []

    target = await other_org.project()
    code, _, err = await other_org.cli(
        "import", f"{target.name}/copy", str(tmp_path / f"first.{fmt}"), "--new-model", "m", "-q"
    )
    assert code == 0, err
    again = await _exported(other_org, f"{target.name}/copy", tmp_path / "again.jsonl")
    assert full_records.differences(_synced_part(expected), _synced_part(again)) == []
    assert server_set.missing(again.comment) == []
