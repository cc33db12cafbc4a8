"""Dataset export on the client: a resuming page iterator and `corrigo export`.

`export_pages` reads StreamExportDataset and, when the stream breaks (UNAVAILABLE),
opens it again from the last continuation received, so no comment is lost or repeated.
`export_to_file` writes JSONL or CSV and keeps, next to the file, the continuation and
byte offset of the last page written: an interrupted export (killed, network down)
started again with the same arguments truncates the file to that offset and goes on
from that continuation.
"""

from __future__ import annotations

import collections
import csv
import io
import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Never, TypeVar

import grpc
from google.protobuf import descriptor, json_format
from tqdm import tqdm

from corrigo.client import fields, records
from corrigo.client.errors import CorrigoError, UsageError
from corrigo.v1 import datasets_pb2, datasets_pb2_grpc

Page = TypeVar("Page")
FORMATS = ("jsonl", "csv", "parquet")
# The CSV is a flat view of each result: a column per field path below ExportedComment,
# through the first item of a repeated message (the first message); a repeated string
# joined with `;`, a Struct or repeated message as its JSON.
CSV_COLUMNS = {
    "uid": "comment.uid",
    "source_id": "comment.source_id",
    "id": "comment.id",
    "thread_id": "comment.thread_id",
    "timestamp": "comment.timestamp",
    "created_at": "comment.created_at",
    "subject": "comment.messages.subject.text",
    "body": "comment.messages.body.text",
    "from": "comment.messages.from",
    "to": "comment.messages.to",
    "user_properties": "comment.user_properties",
    "assigned": "annotations.labels.assigned",
    "predictions": "predictions.labels",
}
# The fields the flat view leaves out (the JSONL and Parquet exports hold them): a field
# new to the protos must be added to one of the two (tests/test_export.py checks).
CSV_LEFT_OUT = (
    "comment.messages.cc",
    "comment.messages.bcc",
    "comment.messages.sent_at",
    "comment.messages.language",
    "comment.text_format",
    "comment.last_modified",
    "comment.context",
    "comment.has_annotations",
)
_RETRIES = 5
# How often an export saves where to resume from.
CHECKPOINT_SECONDS = 1.0
# Exports of at least this many comments are encoded by worker processes.
PARALLEL_FROM = 20_000
# The CSV's JSON cells keep `json.dumps`'s default separators, as they always had.
_CSV_JSON = json.JSONEncoder(ensure_ascii=False)


def export_pages(
    stub: datasets_pb2_grpc.DatasetServiceStub,
    request: datasets_pb2.StreamExportDatasetRequest,
    *,
    retries: int | None = _RETRIES,
    retrying: Callable[[CorrigoError, float], None] | None = None,
) -> Iterator[datasets_pb2.StreamExportDatasetResponse]:
    """Every page of the export (of a follow stream: every message, for as long as it
    runs), resuming after UNAVAILABLE up to `retries` times in a row (None: always),
    with back-off; `retrying(error, seconds)` hears each wait. The first page carries
    `total` when the request asks for it."""
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
            failure = CorrigoError.from_rpc_error(error)
            if failure.code != grpc.StatusCode.UNAVAILABLE or (
                retries is not None and failures >= retries
            ):
                raise failure from None
            failures += 1
            seconds = min(0.2 * 2**failures, 5.0)
            if retrying is not None:
                retrying(failure, seconds)
            time.sleep(seconds)


def result_json(result: datasets_pb2.ExportedComment) -> str:
    """One JSONL line: the export result's JSON mapping, proto field names (exactly
    `json_format.MessageToDict`'s, built by `records`)."""
    return records.exported_line(result)


# How a CSV cell shows its field's JSON value: the text, repeated strings joined, or JSON.
_TEXT, _JOINED = "text", "joined"


def _cell_kind(field: descriptor.FieldDescriptor) -> Any:
    """_TEXT, _JOINED, or the empty JSON value of a field shown as JSON."""
    kind = fields.kind(field)
    if kind == fields.STRUCT:
        return {}
    if field.is_repeated:
        return [] if kind == fields.MESSAGE else _JOINED
    return _TEXT


def _plan() -> tuple[list[tuple[int, str, bool]], list[tuple[int, str, Any]]]:
    """The steps from a line's object to the objects holding the columns' fields (each
    from an earlier object: its index, the field's name, whether it takes the first item
    of a list), each walked once per row; and each column's object, field and cell kind."""
    steps: list[tuple[int, str, bool]] = []
    at_path: dict[str, int] = {"": 0}
    cells = []
    for path in CSV_COLUMNS.values():
        *names, leaf = path.split(".")
        message, at, walked = datasets_pb2.ExportedComment.DESCRIPTOR, 0, ""
        for name in names:
            field = message.fields_by_name[name]
            walked += "." + name
            if walked not in at_path:
                steps.append((at, name, field.is_repeated))
                at_path[walked] = len(steps)
            at, message = at_path[walked], fields.held(field)
        cells.append((at, leaf, _cell_kind(message.fields_by_name[leaf])))
    return steps, cells


_STEPS, _CELLS = _plan()


def csv_row(line: dict[str, Any]) -> list[str]:
    """One CSV row (`CSV_COLUMNS`) from a JSONL line's object. Rows are made from the lines
    (written in C) because reading the protobuf fields costs Python more than parsing
    their JSON; one loop, no call per cell, as a row costs more than its line's parse."""
    objects: list[Any] = [line]
    for at, name, first in _STEPS:
        found = objects[at]
        found = found.get(name) if found else None
        objects.append(found[0] if found and first else found)
    row = []
    for at, leaf, kind in _CELLS:
        found = objects[at]
        value = found.get(leaf) if found else None
        if kind is _TEXT:
            row.append("" if value is None else value)
        elif kind is _JOINED:
            row.append(";".join(value) if value else "")
        else:
            row.append(_CSV_JSON.encode(kind if value is None else value))
    return row


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


def encode_page(page: datasets_pb2.StreamExportDatasetResponse, fmt: str) -> bytes:
    """A page's comments as the file holds them: JSON lines (with a followed export's
    deleted comments and resets), or CSV rows (`CSV_COLUMNS`)."""
    if fmt == "jsonl":
        if page.reset:
            return records.RESET_LINE
        if page.deleted_uids:
            return records.deleted_lines(page.deleted_uids)
        return records.page_lines(page)
    lines = records.page_lines(page).split(b"\n")[:-1]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerows([csv_row(records.loads(line)) for line in lines])
    return text.getvalue().encode()


def _csv_header() -> bytes:
    header = io.StringIO()
    csv.writer(header).writerow(list(CSV_COLUMNS))
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
    pages = answered(export_pages(stub, request, **_retries(request)))
    with _bar(request, 0, progress) as bar:
        if fmt == "csv":
            out.write(_csv_header())
        for page in pages:
            if page.total:
                bar.total = page.total
            out.write(encode_page(page, fmt))
            out.flush()
            written += len(page.comments)
            bar.update(len(page.comments))
    return written


def _retrying(error: CorrigoError, seconds: float) -> None:
    print(
        f"corrigo export: {error.message}; retrying in {seconds:.1f} s (--follow retries "
        "for as long as it runs)",
        file=sys.stderr,
        flush=True,
    )


def _retries(request: datasets_pb2.StreamExportDatasetRequest) -> dict[str, Any]:
    """How `export_pages` retries: a followed export for as long as it runs, saying so."""
    return {"retries": None, "retrying": _retrying} if request.follow else {}


def answered(pages: Iterator[Page]) -> Iterator[Page]:
    """The pages of a stream, the first one read already: a first call that fails raises
    here, before a progress bar is shown or an output file is created."""
    first = next(pages, None)
    return itertools.chain([first], pages) if first is not None else iter(())


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
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    stop: threading.Event | None = None,
) -> int:
    """Export into `output`, resuming an interrupted export of the same query; answers
    how many comments the file holds. JSONL and CSV save the resume state (after an
    fsync of the file) at most every `checkpoint_seconds`, so syncing the disk never
    paces the export; Parquet saves it with each row group (`parquet_export`). When
    `stop` is set, a JSONL or CSV export saves its state after the page being written and
    ends with KeyboardInterrupt (run again, it resumes)."""
    query = {"format": fmt, **json_format.MessageToDict(request, preserving_proto_field_name=True)}
    state_path = _state_path(output)
    state = None if restart else _load_state(state_path, query)
    request = datasets_pb2.StreamExportDatasetRequest.FromString(request.SerializeToString())
    request.include_total = True
    written = 0
    if state is not None:
        request.continuation = state["continuation"]
        written = int(state["written"])
    pages = answered(export_pages(stub, request, **_retries(request)))
    with _bar(request, written, progress) as bar:
        resume = _Resume(query, state_path, state, written)
        written = _export(pages, output, fmt, resume, bar, checkpoint_seconds, stop, request.follow)
    state_path.unlink(missing_ok=True)
    return written


@dataclass(frozen=True)
class _Resume:
    """Where an export starts: its query, its state file and the state read from it."""

    query: dict[str, Any]
    path: Path
    state: dict[str, Any] | None
    written: int


def _export(
    pages: Iterator[datasets_pb2.StreamExportDatasetResponse],
    output: Path,
    fmt: str,
    resume: _Resume,
    bar: tqdm[Never],
    checkpoint_seconds: float,
    stop: threading.Event | None,
    follow: bool,
) -> int:
    query, state_path, state, written = resume.query, resume.path, resume.state, resume.written
    if fmt == "parquet":
        from corrigo.client.parquet_export import export_parquet

        def save(continuation: str, written: int, parts: int) -> None:
            _save_state(
                state_path,
                {"query": query, "continuation": continuation, "written": written, "parts": parts},
            )

        written = export_parquet(pages, output, state, save, bar)
    else:
        offset = int(state["offset"]) if state is not None else 0

        def save_text(continuation: str, offset: int, written: int) -> None:
            _save_state(
                state_path,
                {
                    "query": query,
                    "continuation": continuation,
                    "offset": offset,
                    "written": written,
                },
            )

        written = _export_text(
            pages, output, fmt, offset, written, bar, checkpoint_seconds, save_text, stop, follow
        )
    return written


def _encode_serialized(page: bytes, fmt: str) -> bytes:
    """`encode_page` of a serialized page, in a worker process."""
    return encode_page(datasets_pb2.StreamExportDatasetResponse.FromString(page), fmt)


@dataclass
class _Encoded:
    """A page on its way to the file: its bytes (or their future), and where it ends."""

    data: bytes | Future[bytes]
    comments: int
    continuation: str

    def ready(self) -> bool:
        return isinstance(self.data, bytes) or self.data.done()

    def result(self) -> bytes:
        return self.data if isinstance(self.data, bytes) else self.data.result()


def _encoded_pages(
    pages: Iterator[datasets_pb2.StreamExportDatasetResponse],
    fmt: str,
    total: Callable[[int], None],
    follow: bool,
) -> Iterator[_Encoded]:
    """The pages encoded, in order. A large export encoded in Python (CSV, or JSONL where
    the C writer is not built) is encoded by worker processes, one per core, a few pages
    ahead of the file, since that costs the client several times what streaming costs
    the server; otherwise this process encodes, and starts no worker. `total(n)` hears
    the first page's total."""
    first = next(pages, None)
    if first is None:
        return
    total(first.total)
    workers = os.cpu_count() or 1
    compiled = fmt == "jsonl" and records.compiled_lines is not None
    # A followed export's pages are written as they come: none waits for the next.
    if compiled or follow or first.total < PARALLEL_FROM or workers < 2:
        for page in itertools.chain([first], pages):
            yield _Encoded(encode_page(page, fmt), len(page.comments), page.continuation)
        return
    # Spawned, not forked: a fork of a process running gRPC's threads is unsafe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        ahead: collections.deque[_Encoded] = collections.deque()
        for page in itertools.chain([first], pages):
            work = pool.submit(_encode_serialized, page.SerializeToString(), fmt)
            ahead.append(_Encoded(work, len(page.comments), page.continuation))
            while len(ahead) > 2 * workers or (ahead and ahead[0].ready()):
                yield ahead.popleft()
        yield from ahead


def _export_text(
    pages: Iterator[datasets_pb2.StreamExportDatasetResponse],
    output: Path,
    fmt: str,
    offset: int,
    written: int,
    bar: tqdm[Never],
    checkpoint_seconds: float,
    save: Callable[[str, int, int], None],
    stop: threading.Event | None,
    follow: bool,
) -> int:
    """JSONL or CSV from `offset` on (the file cut there first); `save(continuation,
    offset, written)` records where to resume."""
    saved = time.monotonic()

    def total(count: int) -> None:
        if count:
            bar.total = written + count

    with open(output, "r+b" if offset else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        if fmt == "csv" and offset == 0:
            out.write(_csv_header())
        for page in _encoded_pages(pages, fmt, total, follow):
            out.write(page.result())
            written += page.comments
            bar.update(page.comments)
            stopping = stop is not None and stop.is_set()
            due = time.monotonic() - saved >= checkpoint_seconds
            if page.continuation and (due or stopping):
                out.flush()
                os.fsync(out.fileno())
                save(page.continuation, out.tell(), written)
                saved = time.monotonic()
                if stopping:
                    raise KeyboardInterrupt
    return written
