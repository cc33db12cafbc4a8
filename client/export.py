"""Dataset export on the client: a resuming page iterator and `corrigo export`.

`export_pages` reads StreamExportDataset and, when the stream breaks (UNAVAILABLE),
opens it again from the last continuation received, so no comment is lost or repeated.
`export_to_file` writes JSONL or CSV and keeps, next to the file, the continuation and
byte offset of the last page written: an interrupted export (killed, network down)
started again with the same arguments truncates the file to that offset and goes on
from that continuation.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Never

import grpc
from google.protobuf import json_format
from tqdm import tqdm

from corrigo.client.errors import CorrigoError, UsageError
from corrigo.v1 import datasets_pb2, datasets_pb2_grpc

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = [
    "uid",
    "source_id",
    "id",
    "thread_id",
    "timestamp",
    "created_at",
    "subject",
    "body",
    "from",
    "to",
    "user_properties",
    "assigned",
    "predictions",
]
_RETRIES = 5


def export_pages(
    stub: datasets_pb2_grpc.DatasetServiceStub,
    request: datasets_pb2.StreamExportDatasetRequest,
    *,
    retries: int = _RETRIES,
) -> Iterator[datasets_pb2.StreamExportDatasetResponse]:
    """Every page of the export, resuming after UNAVAILABLE up to `retries` times in a
    row. The first page carries `total` when the request asks for it."""
    request = datasets_pb2.StreamExportDatasetRequest.FromString(request.SerializeToString())
    failures = 0
    while True:
        try:
            for page in stub.StreamExportDataset(request):
                failures = 0
                yield page
                request.include_total = False
                if not page.continuation:
                    return
                request.continuation = page.continuation
            return
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or failures >= retries:
                raise CorrigoError.from_rpc_error(error) from None
            failures += 1
            time.sleep(min(0.2 * 2**failures, 5.0))


def result_json(result: datasets_pb2.ExportedComment) -> str:
    """One JSONL line: the export result's JSON mapping, proto field names."""
    return json.dumps(
        json_format.MessageToDict(result, preserving_proto_field_name=True),
        ensure_ascii=False,
        separators=(",", ":"),
    )


def result_row(result: datasets_pb2.ExportedComment) -> list[str]:
    """One CSV row: the comment's first message, and JSON for the structured fields."""
    comment = result.comment
    first = comment.messages[0] if comment.messages else None
    data = json_format.MessageToDict(result, preserving_proto_field_name=True)
    return [
        comment.uid,
        comment.source_id,
        comment.id,
        comment.thread_id,
        comment.timestamp.ToJsonString() if comment.HasField("timestamp") else "",
        comment.created_at.ToJsonString() if comment.HasField("created_at") else "",
        first.subject.text if first else "",
        first.body.text if first else "",
        getattr(first, "from") if first else "",
        ";".join(first.to) if first else "",
        json.dumps(data["comment"].get("user_properties", {}), ensure_ascii=False),
        json.dumps(
            data.get("annotations", {}).get("labels", {}).get("assigned", []), ensure_ascii=False
        ),
        json.dumps(data.get("predictions", {}).get("labels", []), ensure_ascii=False),
    ]


def _state_path(output: Path) -> Path:
    return output.with_name(output.name + ".export-state")


def _load_state(path: Path, query: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    if state.get("query") != query:
        raise UsageError(
            f"{path} belongs to an interrupted export with other arguments: run that "
            "export again to finish it, or pass --restart to start over"
        )
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(state))
    os.replace(scratch, path)


def _encode(page: datasets_pb2.StreamExportDatasetResponse, fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(result_json(r) + "\n" for r in page.comments).encode()
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerows(result_row(r) for r in page.comments)
    return text.getvalue().encode()


def _csv_header() -> bytes:
    header = io.StringIO()
    csv.writer(header).writerow(CSV_COLUMNS)
    return header.getvalue().encode()


def export_to_stream(
    stub: datasets_pb2_grpc.DatasetServiceStub,
    request: datasets_pb2.StreamExportDatasetRequest,
    out: BinaryIO,
    fmt: str,
    *,
    progress: bool = True,
) -> int:
    """Export into an open stream (standard output), without resuming; answers how many
    comments were written."""
    request = datasets_pb2.StreamExportDatasetRequest.FromString(request.SerializeToString())
    request.include_total = True
    written = 0
    with _bar(request, 0, progress) as bar:
        if fmt == "csv":
            out.write(_csv_header())
        for page in export_pages(stub, request):
            if page.total:
                bar.total = page.total
            out.write(_encode(page, fmt))
            out.flush()
            written += len(page.comments)
            bar.update(len(page.comments))
    return written


def _bar(
    request: datasets_pb2.StreamExportDatasetRequest, done: int, progress: bool
) -> tqdm[Never]:
    """The progress bar on stderr, counting from `done` (comments a resumed export has)."""
    return tqdm(
        desc=f"export {request.owner}/{request.name}",
        initial=done,
        unit=" comments",
        disable=not progress,
    )


def export_to_file(
    stub: datasets_pb2_grpc.DatasetServiceStub,
    request: datasets_pb2.StreamExportDatasetRequest,
    output: Path,
    fmt: str,
    *,
    restart: bool = False,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Export into `output`, resuming an interrupted export of the same query; answers
    how many comments the file holds. When `stop` is set, the export ends after the page
    being written, with KeyboardInterrupt (the file and its state then resume)."""
    query = {"format": fmt, **json_format.MessageToDict(request, preserving_proto_field_name=True)}
    state_path = _state_path(output)
    state = None if restart else _load_state(state_path, query)
    request = datasets_pb2.StreamExportDatasetRequest.FromString(request.SerializeToString())
    request.include_total = True
    if state is not None:
        request.continuation = state["continuation"]
        written, offset = int(state["written"]), int(state["offset"])
    else:
        written, offset = 0, 0
    with (
        open(output, "r+b" if state is not None else "wb") as out,
        _bar(request, written, progress) as bar,
    ):
        out.truncate(offset)
        out.seek(offset)
        if fmt == "csv" and offset == 0:
            out.write(_csv_header())
        for page in export_pages(stub, request):
            if page.total:
                bar.total = written + page.total
            out.write(_encode(page, fmt))
            out.flush()
            written += len(page.comments)
            bar.update(len(page.comments))
            if page.continuation:
                os.fsync(out.fileno())
                _save_state(
                    state_path,
                    {
                        "query": query,
                        "continuation": page.continuation,
                        "offset": out.tell(),
                        "written": written,
                    },
                )
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
    state_path.unlink(missing_ok=True)
    return written
