"""`corrigo sync`: bulk-load comments from JSONL through StreamSyncComments.

The file is read lazily in chunks; every chunk sent is kept until the server
acknowledges it (it is then committed). When the stream breaks with UNAVAILABLE, a new
stream sends the unacknowledged chunks again, then the rest of the file: syncing is
idempotent, so a chunk committed twice changes nothing.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from corrigo.client import records
from corrigo.client.errors import CorrigoError
from corrigo.client.progress import Progress
from corrigo.v1 import sources_pb2, sources_pb2_grpc
from corrigo.v1.comments_pb2 import Comment

DEFAULT_CHUNK = 1024
# A comment's output-only fields, which a sync leaves as the server has them.
SERVER_FIELDS = ("uid", "source_id", "created_at", "last_modified", "context", "has_annotations")
_RETRIES = 5
# A chunk of a bulk stream: a request message with a `chunk` number.
Chunk = TypeVar("Chunk", bound=Any)


def read_comments(path: Path) -> Iterator[Comment]:
    """Comments of a JSONL file: one comment per line, either a Comment's JSON or an
    export result's (`{"comment": {...}, ...}`, as `corrigo export` writes), without the
    fields the server sets (a sync ignores them: not parsing or sending them saves both
    sides work)."""
    loads = json.loads
    parse = records.comment_from_dict
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = loads(line)
                if not isinstance(data, dict):
                    raise json_format.ParseError(
                        f"expected a JSON object, got {type(data).__name__}"
                    )
                inner = data.get("comment")
                fields = inner if isinstance(inner, dict) else data
                for name in SERVER_FIELDS:
                    fields.pop(name, None)
                yield parse(fields)
            except (ValueError, json_format.ParseError) as error:
                raise SystemExit(f"corrigo sync: {path}:{number}: {error}") from None


def count_lines(path: Path) -> int:
    with open(path, "rb") as data:
        return sum(1 for line in data if line.strip())


@dataclass
class SyncTotals:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0


@dataclass
class _Window:
    """Chunks sent and not yet acknowledged, shared with gRPC's request thread."""

    pending: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def stream_chunks(
    open_stream: Callable[[Iterator[Chunk]], Iterable[Any]],
    chunks: Iterator[Chunk],
    on_ack: Callable[[Any, Chunk], None],
) -> None:
    """Send `chunks` (each numbered by its distinct `chunk` field, each naming its target)
    through a bidirectional stream that acknowledges each one by number; after
    UNAVAILABLE, a new stream sends the unacknowledged chunks again, then the rest.
    `on_ack(ack, chunk)` sees every acknowledgement."""
    window = _Window()
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
            with window.lock:
                window.pending[chunk.chunk] = chunk
            yield chunk

    def requests() -> Iterator[Chunk]:
        with window.lock:
            resend = [window.pending[n] for n in sorted(window.pending)]
        yield from resend
        yield from fresh()

    failures = 0
    while True:
        try:
            for ack in open_stream(requests()):
                failures = 0
                with window.lock:
                    chunk = window.pending.pop(ack.chunk)
                on_ack(ack, chunk)
            if failed:
                raise failed[0]
            return
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or failures >= _RETRIES:
                raise CorrigoError.from_rpc_error(error) from None
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
    comments = read_comments(path)
    totals = SyncTotals()
    bar = Progress(f"sync {owner}/{source}", count_lines(path)) if progress else None

    def chunks() -> Iterator[sources_pb2.StreamSyncCommentsRequest]:
        for number in itertools.count():
            batch = list(itertools.islice(comments, chunk_size))
            if not batch:
                return
            yield sources_pb2.StreamSyncCommentsRequest(
                owner=owner, name=source, chunk=number, comments=batch
            )

    def acknowledged(
        ack: sources_pb2.StreamSyncCommentsResponse, chunk: sources_pb2.StreamSyncCommentsRequest
    ) -> None:
        totals.new += ack.new
        totals.updated += ack.updated
        totals.unchanged += ack.unchanged
        totals.chunks += 1
        if bar:
            bar.advance(len(chunk.comments))

    stream_chunks(stub.StreamSyncComments, chunks(), acknowledged)
    if bar:
        bar.finish()
    return totals
