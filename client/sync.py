"""`corrigo sync`: bulk-load comments from JSONL through StreamSyncComments.

The file is read lazily in chunks; every chunk sent is kept until the server
acknowledges it (it is then committed). When the stream breaks with UNAVAILABLE, a new
stream sends the unacknowledged chunks again, then the rest of the file: syncing is
idempotent, so a chunk committed twice changes nothing.

A line that is not a comment ends the stream after the lines before it (they are sent
and stored), and the sync fails naming that line; so does a comment the server refuses,
named by its line rather than its place in a chunk.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Never, TypeVar

import grpc
from google.protobuf import json_format
from tqdm import tqdm

from corrigo.client import fields, records
from corrigo.client.errors import CorrigoError, UsageError
from corrigo.v1 import datasets_pb2, sources_pb2, sources_pb2_grpc
from corrigo.v1.comments_pb2 import Comment

DEFAULT_CHUNK = 1024
_RETRIES = 5
# Fields the server sets (OUTPUT_ONLY in the protos): a sync ignores them, so they are
# neither parsed nor sent.
SERVER_FIELDS = tuple(f.name for f in fields.output_only(Comment.DESCRIPTOR))
# A chunk of a bulk stream: a request message with a `chunk` number.
Chunk = TypeVar("Chunk", bound=Any)
# What one line of a JSONL file is read as.
Parsed = TypeVar("Parsed")
Item = TypeVar("Item")
_COMMENT_FIELDS = {f.name for f in Comment.DESCRIPTOR.fields} | {
    f.json_name for f in Comment.DESCRIPTOR.fields
}
_RESULT_FIELDS = {f.name for f in datasets_pb2.ExportedComment.DESCRIPTOR.fields}
_IN_CHUNK = re.compile(r"^comments\[(\d+)\]\.?")


class SyncError(UsageError):
    """The sync stopped at a line of the file; `stored` comments before it were stored."""

    def __init__(self, where: str, problem: str, stored: int) -> None:
        super().__init__(
            f"{where}: {problem}; fix it and run again ({stored} comments before it were "
            "stored, and syncing them again changes nothing)"
        )
        self.where, self.problem, self.stored = where, problem, stored


class _BadLine(Exception):
    def __init__(self, number: int, problem: str) -> None:
        super().__init__(problem)
        self.number, self.problem = number, problem


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def parse_comment(data: Any) -> Comment:
    """A Comment from one JSONL line's value: a Comment's JSON or an export result's
    (`{"comment": {...}, ...}`, as `corrigo export` writes). ValueError says what is wrong;
    fields a Comment does not have are an error, not dropped."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object (a Comment), got {_kind(data)}")
    unknown: set[str] = set()
    if isinstance(data.get("comment"), dict):
        unknown = data.keys() - _RESULT_FIELDS
        data = data["comment"]
    unknown |= data.keys() - _COMMENT_FIELDS
    if unknown:
        raise ValueError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            f"(a Comment has {', '.join(f.name for f in Comment.DESCRIPTOR.fields)})"
        )
    for name in SERVER_FIELDS:
        data.pop(name, None)
    try:
        return records.comment_from_dict(data)
    except json_format.ParseError as error:
        raise ValueError(_parse_problem(str(error).splitlines()[0], data)) from None


# json_format's words for a bad time, and the path of the field it names.
_BAD_TIME = re.compile(r"Failed to parse .*timestamp.* at Comment\.(?P<path>[\w.\[\]]+?)\.+$")


def _parse_problem(message: str, data: dict[str, Any]) -> str:
    """json_format's message, or for a time it cannot read, the field, the form expected
    and the value given."""
    bad_time = _BAD_TIME.match(message)
    if bad_time is None:
        return message
    path = bad_time.group("path")
    value: Any = data
    for name, index in re.findall(r"(\w+)(?:\[(\d+)\])?", path):
        value = value.get(name) if isinstance(value, dict) else None
        if index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
    return (
        f"{path}: expected a time such as 2024-01-01T10:00:00Z (RFC 3339, with Z or an "
        f"offset such as +02:00), got {json.dumps(value)}"
    )


def _values(lines: BinaryIO) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of every non-blank line but a followed export's deleted
    comments and resets (`records.is_follow_line`); _BadLine at the first line that is
    not UTF-8 or not JSON."""
    for number, line in enumerate(lines, 1):
        try:
            value = records.loads(line)
        except UnicodeDecodeError:
            raise _BadLine(number, "not UTF-8 text") from None
        except json.JSONDecodeError as error:
            text = line.decode("utf-8").rstrip("\r\n")
            if not text.strip():
                continue
            # Where the parser stopped, counted in the line without its newline.
            column = min(error.pos, len(text)) + 1
            end = ", the end of the line" if error.pos >= len(text) else ""
            raise _BadLine(number, f"not JSON ({error.msg} at column {column}{end})") from None
        if records.is_follow_line(value):
            continue  # a followed export's deleted comment or reset: nothing to load
        yield number, value


def _read(lines: BinaryIO) -> Iterator[tuple[int, Comment]]:
    """(line number, comment) for every non-blank line; _BadLine at the first bad one."""
    for number, value in _values(lines):
        try:
            comment = parse_comment(value)
        except ValueError as error:
            raise _BadLine(number, str(error)) from None
        yield number, comment


def read_comments(path: Path) -> Iterator[Comment]:
    """Every comment of a JSONL file, as `corrigo sync` reads them; SyncError names the
    first bad line."""
    with open(path, "rb") as lines:
        try:
            for _, comment in _read(lines):
                yield comment
        except _BadLine as bad:
            raise SyncError(f"{path}:{bad.number}", bad.problem, 0) from None


def json_lines(path: Path, command: str, parse: Callable[[Any], Parsed]) -> Iterator[Parsed]:
    """`parse` of each non-blank line's JSON; SystemExit naming `command` and the first line
    that is not UTF-8, not JSON, or that `parse` refuses (ValueError, AttributeError or
    ParseError)."""
    with open(path, "rb") as lines:
        try:
            for number, value in _values(lines):
                try:
                    parsed = parse(value)
                except (ValueError, AttributeError, json_format.ParseError) as error:
                    raise SystemExit(f"{command}: {path}:{number}: {error}") from None
                yield parsed
        except _BadLine as bad:
            raise SystemExit(f"{command}: {path}:{bad.number}: {bad.problem}") from None


def chunks_of(
    items: Iterator[Item], size: int, key: Callable[[Item], Hashable]
) -> Iterator[list[Item]]:
    """`items` in lists of up to `size`, a list ending early before an item whose `key`
    is already in it: a followed export's later line of a comment goes in a later call,
    so it wins (one call takes a comment once). When `items` fails, the list read so far
    comes first, so what precedes a bad line is sent before it is reported."""
    batch: list[Item] = []
    keys: set[Hashable] = set()
    try:
        for item in items:
            seen = key(item)
            if len(batch) == size or seen in keys:
                yield batch
                batch, keys = [], set()
            batch.append(item)
            keys.add(seen)
    except Exception:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def count_lines(path: Path) -> int:
    with open(path, "rb") as data:
        return sum(1 for line in data if line.strip())


@dataclass
class SyncTotals:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0

    @property
    def stored(self) -> int:
        return self.new + self.updated + self.unchanged


def _refused(error: CorrigoError, path: Path, lines: list[int], stored: int) -> Exception:
    """The server's refusal of the chunk of the file's `lines`, naming the line when it
    names a comment."""
    if not error.field_violations:
        return error
    field_name, problem = error.field_violations[0]
    match = _IN_CHUNK.match(field_name)
    if match is None or int(match.group(1)) >= len(lines):
        return error
    more = len(error.field_violations) - 1
    rest = field_name[match.end() :]
    detail = f"{rest}: {problem}" if rest else problem
    if more:
        detail += f" (and {more} more problem{'s' if more > 1 else ''} in this chunk)"
    return SyncError(f"{path}:{lines[int(match.group(1))]}", detail, stored)


def stream_chunks(
    open_stream: Callable[[Iterator[Chunk]], Iterable[Any]],
    chunks: Iterator[Chunk],
    on_ack: Callable[[Any, Chunk], None],
    refused: Callable[[CorrigoError, Chunk], Exception] | None = None,
) -> None:
    """Send `chunks` (each numbered by its distinct `chunk` field, each naming its target)
    through a bidirectional stream that acknowledges each one by number; after
    UNAVAILABLE, a new stream sends the unacknowledged chunks again, then the rest.
    `on_ack(ack, chunk)` sees every acknowledgement. Any other failure raises its
    CorrigoError, or what `refused(error, chunk)` makes of it: chunks are committed in
    order, so the refused one is the oldest unacknowledged."""
    # Chunks sent and not yet acknowledged, shared with gRPC's request thread.
    pending: dict[int, Chunk] = {}
    lock = threading.Lock()
    # What reading the input raised: gRPC's request thread reads it, so the error is kept,
    # the stream ended cleanly after the chunks before it, and the error raised here.
    failed: list[BaseException] = []

    def fresh() -> Iterator[Chunk]:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except BaseException as error:
                failed.append(error)
                return
            with lock:
                pending[chunk.chunk] = chunk
            yield chunk

    def requests() -> Iterator[Chunk]:
        with lock:
            resend = [pending[n] for n in sorted(pending)]
        yield from resend
        yield from fresh()

    failures = 0
    while True:
        try:
            for ack in open_stream(requests()):
                failures = 0
                with lock:
                    chunk = pending.pop(ack.chunk)
                on_ack(ack, chunk)
            if failed:
                raise failed[0]
            return
        except grpc.RpcError as error:
            failure = CorrigoError.from_rpc_error(error)
            if failure.code != grpc.StatusCode.UNAVAILABLE or failures >= _RETRIES:
                with lock:
                    oldest = pending[min(pending)] if pending else None
                if refused is None or oldest is None:
                    raise failure from None
                raise refused(failure, oldest) from None
            failures += 1
            time.sleep(min(0.2 * 2**failures, 5.0))


def sync_file(
    stub: sources_pb2_grpc.SourceServiceStub,
    owner: str,
    source: str,
    path: Path,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = True,
) -> SyncTotals:
    """Sync every comment of the JSONL file; SyncError names the line that stopped it."""
    # Opened here, not in gRPC's request thread, so a missing file fails at once.
    with open(path, "rb") as lines:
        total = count_lines(path) if progress else None
        bar = tqdm(
            desc=f"sync {owner}/{source}", total=total, unit=" comments", disable=not progress
        )
        try:
            return _stream(stub, owner, source, path, _read(lines), chunk_size, bar)
        finally:
            bar.close()


def _stream(
    stub: sources_pb2_grpc.SourceServiceStub,
    owner: str,
    source: str,
    path: Path,
    comments: Iterator[tuple[int, Comment]],
    chunk_size: int,
    bar: tqdm[Never],
) -> SyncTotals:
    totals = SyncTotals()
    # The file's line of each comment of a chunk, by chunk number, until it is acknowledged.
    lines_of: dict[int, list[int]] = {}

    def chunks() -> Iterator[sources_pb2.StreamSyncCommentsRequest]:
        batches = chunks_of(comments, chunk_size, lambda item: item[1].id)
        for number, batch in enumerate(batches):
            lines_of[number] = [line for line, _ in batch]
            yield sources_pb2.StreamSyncCommentsRequest(
                owner=owner, name=source, chunk=number, comments=[c for _, c in batch]
            )

    def acknowledged(
        ack: sources_pb2.StreamSyncCommentsResponse, chunk: sources_pb2.StreamSyncCommentsRequest
    ) -> None:
        totals.new += ack.new
        totals.updated += ack.updated
        totals.unchanged += ack.unchanged
        totals.chunks += 1
        bar.update(len(lines_of.pop(chunk.chunk)))

    def refused(error: CorrigoError, chunk: sources_pb2.StreamSyncCommentsRequest) -> Exception:
        return _refused(error, path, lines_of[chunk.chunk], totals.stored)

    try:
        stream_chunks(stub.StreamSyncComments, chunks(), acknowledged, refused)
    except _BadLine as bad:
        raise SyncError(f"{path}:{bad.number}", bad.problem, totals.stored) from None
    return totals
