"""`corrigo export --format parquet`: one row per comment, nested columns for messages,
assigned labels and predictions, written with pyarrow (the `corrigo[parquet]` extra).

Columns are gathered page by page as plain lists and become one row group per batch of
pages (`ROWS_PER_GROUP` comments or more). A Parquet file's index is written when it is
closed, so an interrupted file cannot be read: each row group is written as a part file
beside the output, and the resume state records the parts complete and the continuation
after the last one. When the export ends, the parts are joined into the output, one row
group each, and removed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Never

from tqdm import tqdm

from corrigo.client import records
from corrigo.v1 import datasets_pb2
from corrigo.v1.comments_pb2 import Comment

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # the extra is not installed: the command says how to get it
    pa = pq = None

ROWS_PER_GROUP = 65_536


def _schema() -> Any:
    stamp = pa.timestamp("us", tz="UTC")
    strings = pa.list_(pa.string())
    message = pa.struct(
        [
            ("subject", pa.string()),
            ("body", pa.string()),
            ("from", pa.string()),
            ("to", strings),
            ("cc", strings),
            ("bcc", strings),
            ("sent_at", stamp),
            ("language", pa.string()),
        ]
    )
    label = pa.struct([("name", pa.string()), ("sentiment", pa.string())])
    predicted = pa.struct(
        [("name", pa.string()), ("probability", pa.float64()), ("sentiment", pa.float64())]
    )
    return pa.schema(
        [
            ("uid", pa.string()),
            ("source_id", pa.string()),
            ("id", pa.string()),
            ("thread_id", pa.string()),
            ("timestamp", stamp),
            ("created_at", stamp),
            ("last_modified", stamp),
            ("context", pa.string()),
            ("text_format", pa.string()),
            ("has_annotations", pa.bool_()),
            ("messages", pa.list_(message)),
            # The JSON object of the comment's typed properties, as in the JSONL export.
            ("user_properties", pa.string()),
            ("assigned", pa.list_(label)),
            ("predictions", pa.list_(predicted)),
        ]
    )


def _micros(comment: Any, field: str) -> int | None:
    """A Timestamp field as microseconds since the epoch (None when unset)."""
    if not comment.HasField(field):
        return None
    stamp = getattr(comment, field)
    return int(stamp.seconds * 1_000_000 + stamp.nanos // 1000)


class _Columns:
    """One row group's columns, as Python lists."""

    def __init__(self) -> None:
        self.rows = 0
        self.values: dict[str, list[Any]] = {name: [] for name in _schema().names}

    def add_page(self, page: datasets_pb2.StreamExportDatasetResponse) -> None:
        v = self.values
        for result in page.comments:
            comment: Comment = result.comment
            v["uid"].append(comment.uid)
            v["source_id"].append(comment.source_id)
            v["id"].append(comment.id)
            v["thread_id"].append(comment.thread_id)
            v["timestamp"].append(_micros(comment, "timestamp"))
            v["created_at"].append(_micros(comment, "created_at"))
            v["last_modified"].append(_micros(comment, "last_modified"))
            v["context"].append(comment.context)
            v["text_format"].append(comment.text_format)
            v["has_annotations"].append(comment.has_annotations)
            v["messages"].append(
                [
                    {
                        # Null when absent, "" when present but empty (as JSON tells).
                        "subject": m.subject.text if m.HasField("subject") else None,
                        "body": m.body.text if m.HasField("body") else None,
                        "from": getattr(m, "from"),
                        "to": list(m.to),
                        "cc": list(m.cc),
                        "bcc": list(m.bcc),
                        "sent_at": _micros(m, "sent_at"),
                        "language": m.language,
                    }
                    for m in comment.messages
                ]
            )
            v["user_properties"].append(
                records.encode(records.struct_dict(comment.user_properties))
            )
            v["assigned"].append(
                [
                    {"name": a.name, "sentiment": a.sentiment}
                    for a in result.annotations.labels.assigned
                ]
            )
            v["predictions"].append(
                [
                    {"name": p.name, "probability": p.probability, "sentiment": p.sentiment}
                    for p in result.predictions.labels
                ]
            )
        self.rows += len(page.comments)

    def table(self) -> Any:
        schema = _schema()
        return pa.Table.from_arrays(
            [pa.array(self.values[f.name], type=f.type) for f in schema], schema=schema
        )


def _parts(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def export_parquet(
    pages: Iterator[datasets_pb2.StreamExportDatasetResponse],
    output: Path,
    state: dict[str, Any] | None,
    save_state: Callable[[str, int, int], None],
    bar: tqdm[Never],
) -> int:
    """The export of `pages` into `output` as Parquet, resuming from `state` (the parts
    complete and the continuation after them); `save_state(continuation, written, parts)`
    records a part once it is complete. Answers how many comments the file holds."""
    if pa is None:
        raise SystemExit(
            "corrigo export: --format parquet needs pyarrow: pip install 'corrigo[parquet]'"
        )
    parts_dir = _parts(output)
    if state is None:
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts, written = 0, 0
    else:
        parts, written = int(state["parts"]), int(state["written"])
        for stale in parts_dir.glob("*.parquet"):
            if int(stale.stem) >= parts:
                stale.unlink()  # a part begun after the last recorded one
    parts_dir.mkdir(exist_ok=True)
    columns = _Columns()

    def flush(continuation: str) -> None:
        nonlocal columns, parts
        pq.write_table(columns.table(), parts_dir / f"{parts:06d}.parquet")
        parts += 1
        save_state(continuation, written, parts)
        columns = _Columns()

    for page in pages:
        if page.total:
            bar.total = written + page.total
        columns.add_page(page)
        written += len(page.comments)
        bar.update(len(page.comments))
        if page.continuation and columns.rows >= ROWS_PER_GROUP:
            flush(page.continuation)
    if columns.rows or not parts:
        pq.write_table(columns.table(), parts_dir / f"{parts:06d}.parquet")
        parts += 1
    scratch = output.with_name(output.name + ".tmp")
    with pq.ParquetWriter(scratch, _schema()) as writer:
        for number in range(parts):
            writer.write_table(pq.read_table(parts_dir / f"{number:06d}.parquet"))
    scratch.replace(output)
    shutil.rmtree(parts_dir)
    return written
