"""The dataset export: request checks, continuations, and pages.

`plan` turns an ExportDatasetRequest (or its streaming twin) into a resolved query and
a keyset position; `Export.page` reads one page in one query and assembles its
messages from stored bytes (see `wire`). The unary and the streaming export share it,
and their continuations are interchangeable.

A continuation carries [move clock at the export's start, model version, sort key,
comment id] and is
bound (`pagination.fingerprint`) to the organization, the dataset (its internal id, so a
re-created dataset of the same name refuses it) and every filter of the request.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from corrigo.server.api import auth, pagination, wire
from corrigo.server.api.validation import Violations
from corrigo.server.domain.uids import split_uid
from corrigo.server.ops import metrics
from corrigo.server.store import changes, datasets, ml_models
from corrigo.server.store import export_pages as store
from corrigo.server.store.sources import micros
from corrigo.v1.comments_pb2 import Annotations, Comment
from corrigo.v1.datasets_pb2 import (
    ExportDatasetRequest,
    ExportDatasetResponse,
    ExportedComment,
    StreamExportDatasetRequest,
    StreamExportDatasetResponse,
)

DEFAULT_LIMIT = 64
MAX_LIMIT = 256
MAX_COMMENT_UIDS = 256
MAX_SOURCE_IDS = 1024
ORDERS = ("timestamp", "created_at")
# A page holds fewer than `limit` comments when they would pass this many bytes.
PAGE_BYTES = 2 * 1024 * 1024
HEX_ID = re.compile(r"^[0-9a-f]{16}$")
TAG_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_METHOD = "/corrigo.v1.DatasetService/ExportDataset"
_FILTERS = ("comment_uids", "source_ids", "order_by", "from", "to", "model_version", "model_tag")

AnyExportRequest = ExportDatasetRequest | StreamExportDatasetRequest


def parse_time(checks: Violations, field: str, value: str) -> int | None:
    """Microseconds since the epoch of an ISO-8601 time (UTC when it has no offset)."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        checks.add(
            field, f"must be an ISO-8601 timestamp such as 2021-02-16T10:55:05Z, got {value!r}"
        )
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.UTC).replace(tzinfo=None)
    return micros(parsed)


@dataclass(frozen=True)
class Export:
    query: store.Query
    token_query: bytes
    after: tuple[int, int] | None
    limit: int
    # Follow mode (`follow`): the position the snapshot was taken at, where the live part
    # resumes (None while the snapshot is not done), and since when (seconds since the
    # epoch) every change before that position has been read (for `--change-retention`).
    follow_start: int | None = None
    live: tuple[int, int] | None = None
    since: int = 0
    # The hex ids of the sources read, by internal id (for the uids of deleted comments).
    source_hex: dict[int, str] = field(default_factory=dict)
    # Follow mode: what the stream shows as a whole, its digest (which its continuations
    # carry), and whether it changed since the continuation resumed (the stream resets).
    view: changes.View | None = None
    digest: int = 0
    reset: bool = False

    def continuation(self, after: tuple[int, int]) -> str:
        """The continuation resuming the export (a follow stream's snapshot) after the
        keyset position `after`."""
        position = [self.query.moves_until, self.query.version_id or 0, *after]
        if self.follow_start is not None:
            position += (self.follow_start, self.since, self.digest)
        return pagination.issue(self.token_query, position)

    def live_continuation(self, position: tuple[int, int], since: int) -> str:
        """The continuation resuming a follow stream's live part after `position`, every
        change before it read `since`."""
        version = self.query.version_id or 0
        return pagination.issue(self.token_query, [version, *position, since, self.digest])

    async def count(self) -> int:
        if not self.query.source_ids:
            return 0
        return await store.count(self.query, self.after)

    async def page(self) -> tuple[bytes, str, Export | None]:
        """One page (one query): its `comments` fields as wire bytes, its continuation (""
        on the last page), and the export positioned after it (None on the last page)."""
        if not self.query.source_ids:
            return b"", "", None
        return self._finish(await store.page(self.query, self.after, self.limit + 1))

    async def pages(self) -> AsyncGenerator[tuple[bytes, str], None]:
        """Every page from here on, as `page` answers them, read ahead of the caller
        (`store.pages`)."""
        if not self.query.source_ids:
            yield b"", ""
            return
        limit = self.limit
        read = store.pages(
            self.query, limit + 1, self.after, lambda rows: comments_field(rows, limit)
        )
        try:
            start = self.follow_start
            async for comments, after in read:
                if after is None:
                    # A follow stream's snapshot ends where its live part starts.
                    live = "" if start is None else self.live_continuation((start, 0), self.since)
                    yield comments, live
                    return
                yield comments, self.continuation(after)
        finally:
            await read.aclose()

    def _finish(self, rows: Sequence[store.Row]) -> tuple[bytes, str, Export | None]:
        comments, taken = comments_field(rows, self.limit)
        if len(rows) <= taken:
            return comments, "", None
        last_id, last_key = rows[taken - 1][0], rows[taken - 1][1]
        return (
            comments,
            self.continuation((last_key, last_id)),
            replace(self, after=(last_key, last_id)),
        )


def _page_number(name: str) -> int:
    """The number of the export pages' field `name`: the unary and the streamed page are
    written by the same code, so they must agree on it."""
    numbers = {
        page.DESCRIPTOR.fields_by_name[name].number
        for page in (ExportDatasetResponse, StreamExportDatasetResponse)
    }
    if len(numbers) != 1:
        raise RuntimeError(f"the export pages number their {name!r} apart: {sorted(numbers)}")
    return numbers.pop()


# The tags pages are assembled with, from the protos; a page's comments, ExportedComment's
# fields and Annotations.labels are all length-delimited.
_EXPORTED = ExportedComment.DESCRIPTOR.fields_by_name
_COMMENTS = wire.field_tag(_page_number("comments"))
_COMMENT = wire.field_tag(_EXPORTED["comment"].number)
_ANNOTATIONS = wire.field_tag(_EXPORTED["annotations"].number)
_PREDICTIONS = wire.field_tag(_EXPORTED["predictions"].number)
_LABELS = wire.field_tag(Annotations.DESCRIPTOR.fields_by_name["labels"].number)
_HAS_ANNOTATIONS = wire.true_flag(Comment.DESCRIPTOR.fields_by_name["has_annotations"].number)
_CONTINUATION = _page_number("continuation")
_TOTAL = StreamExportDatasetResponse.DESCRIPTOR.fields_by_name["total"].number
# The tags' sizes, counted once rather than for every comment.
_COMMENTS_TAG_BYTES = len(_COMMENTS)
_PARTS_TAG_BYTES = len(_COMMENT) + len(_ANNOTATIONS) + len(_PREDICTIONS)
_LABELS_TAG_BYTES = len(_LABELS)


def comments_field(rows: Sequence[store.Row], limit: int) -> tuple[bytes, int]:
    """ExportDatasetResponse.comments (ExportedComment {comment, annotations: {labels},
    predictions}) of up to `limit` rows, and how many rows they hold: fewer when they
    would pass PAGE_BYTES (big comments end a page early, so a message stays far below
    4 MiB), never none. Each comment is written from its stored bytes, with
    `has_annotations` appended when it has a labelling; the parts are joined once."""
    varint = wire.varint
    parts: list[bytes] = []
    extend = parts.extend
    size = taken = 0
    for _, _, body, assigned, predicted in rows[:limit]:
        flag = b"" if assigned is None else _HAS_ANNOTATIONS
        labels = assigned or b""
        predictions = predicted or b""
        comment_len = len(body) + len(flag)
        comment_varint = varint(comment_len)
        labels_varint = varint(len(labels))
        annotations_len = _LABELS_TAG_BYTES + len(labels_varint) + len(labels)
        annotations_varint = varint(annotations_len)
        predictions_varint = varint(len(predictions))
        inner = (
            _PARTS_TAG_BYTES
            + len(comment_varint)
            + comment_len
            + len(annotations_varint)
            + annotations_len
            + len(predictions_varint)
            + len(predictions)
        )
        inner_varint = varint(inner)
        size += _COMMENTS_TAG_BYTES + len(inner_varint) + inner
        if taken and size > PAGE_BYTES:
            break
        extend(
            (
                _COMMENTS,
                inner_varint,
                _COMMENT,
                comment_varint,
                body,
                flag,
                _ANNOTATIONS,
                annotations_varint,
                _LABELS,
                labels_varint,
                labels,
                _PREDICTIONS,
                predictions_varint,
                predictions,
            )
        )
        taken += 1
    metrics.comments_exported(taken)
    return b"".join(parts), taken


def continuation_field(continuation: str) -> bytes:
    """An export page's `continuation` field; absent when empty, as proto3 has it."""
    return wire.field(_CONTINUATION, continuation.encode()) if continuation else b""


async def stream(request: StreamExportDatasetRequest) -> AsyncIterator[bytes]:
    """The streamed export's messages, serialized: each page's comments, its
    continuation, and (first message, with `include_total`) the total. Pages are read
    one ahead of the message being sent (`store.pages`), each in a unit of work of its
    own, so a client that stops reading holds no database connection."""
    export = await plan(request)
    async for message in snapshot(export, request.include_total):
        yield message


async def snapshot(export: Export, include_total: bool) -> AsyncIterator[bytes]:
    """`stream`'s messages of `export` from its position on."""
    total = await export.count() if include_total else 0
    pages_left = export.pages()
    try:
        async for comments, continuation in pages_left:
            message = comments + continuation_field(continuation)
            if total:
                message += wire.int_field(_TOTAL, total)
                total = 0
            yield message
    finally:
        await pages_left.aclose()


def _check_filters(checks: Violations, request: AnyExportRequest) -> list[tuple[str, str]]:
    """Checks the request's own fields; answers the parsed comment uids."""
    checks.check(
        0 <= request.limit <= MAX_LIMIT, "limit", f"must be 0..{MAX_LIMIT}, got {request.limit}"
    )
    if request.order_by:
        checks.check(request.order_by in ORDERS, "order_by", f"must be one of {', '.join(ORDERS)}")
    uids: list[tuple[str, str]] = []
    if request.comment_uids:
        if checks.check(
            len(request.comment_uids) <= MAX_COMMENT_UIDS,
            "comment_uids",
            f"at most {MAX_COMMENT_UIDS} uids, got {len(request.comment_uids)}",
        ):
            for i, uid in enumerate(request.comment_uids):
                parsed = split_uid(uid)
                if checks.check(
                    parsed is not None,
                    f"comment_uids[{i}]",
                    "must be source_id.comment_id (source_id: 16 hex characters)",
                ):
                    assert parsed is not None
                    uids.append(parsed)
        for other in ("source_ids", "from", "to"):
            checks.check(
                not getattr(request, other),
                "comment_uids",
                f"no other filter may be passed with comment_uids (got {other})",
            )
    if checks.check(
        len(request.source_ids) <= MAX_SOURCE_IDS,
        "source_ids",
        f"at most {MAX_SOURCE_IDS} source ids, got {len(request.source_ids)}",
    ):
        for i, source_id in enumerate(request.source_ids):
            checks.check(
                bool(HEX_ID.match(source_id)), f"source_ids[{i}]", "must be 16 hex characters"
            )
    checks.check(
        request.model_version >= 0,
        "model_version",
        f"must be >= 0, got {request.model_version}",
    )
    if request.model_tag:
        checks.check(
            bool(TAG_NAME.match(request.model_tag)),
            "model_tag",
            "must be 1..32 lower-case letters, digits, '-' or '_', starting with a letter",
        )
        checks.check(
            not request.model_version, "model_tag", "give model_version or model_tag, not both"
        )
    return uids


async def _version_id(dataset_id: int, request: AnyExportRequest) -> int | None:
    if request.model_version:
        return (await ml_models.find_version(dataset_id, request.model_version)).id
    if request.model_tag:
        return (await ml_models.tagged_version(dataset_id, request.model_tag)).id
    latest = await ml_models.latest_version(dataset_id)
    return latest.id if latest else None


def _position(checks: Violations, token: str, token_query: bytes, follow: bool) -> list[int]:
    """An export continuation's position: [move clock, version, key, id], then (follow
    mode) the snapshot's position, its time and the view's digest; or, in a follow
    stream's live part, [version, change position, id, time, view's digest]."""
    position = pagination.read(token, token_query, "continuation")
    lengths = (7, 5) if follow else (4,)
    if len(position) not in lengths or not all(isinstance(v, int) for v in position):
        checks.add("continuation", "invalid continuation")
        checks.raise_if_any()
    return position


def _digest(source_ids: Sequence[int], version_id: int | None) -> int:
    """A follow stream's view in a number its continuations carry: the sources it reads
    and the model version it shows."""
    text = f"{','.join(map(str, source_ids))};{version_id or 0}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "big")


async def plan(request: AnyExportRequest) -> Export:
    """Check the request, resolve its dataset, sources, model version and position. The
    dataset and its sources come with the call's access check (`auth.read_with_access`,
    below)."""
    checks = Violations()
    uids = _check_filters(checks, request)
    from_us = parse_time(checks, "from", getattr(request, "from"))
    to_us = parse_time(checks, "to", request.to)
    checks.raise_if_any()
    checks.name("name", request.name)
    checks.raise_if_any()
    read = datasets.sources_read(auth.project(), request.name, auth.companion_rows())
    return await _planned(request, read, uids, (from_us, to_us), request.continuation)


async def review(request: StreamExportDatasetRequest, export: Export) -> Export:
    """A follow stream's export planned again, from its start, on the dataset as it is
    now (its sources read again by id): NOT_FOUND once the dataset is deleted."""
    read = await datasets.export_sources(export.query.dataset_id)
    return await _planned(request, read, [], (None, None), "")


async def _planned(
    request: AnyExportRequest,
    read: datasets.ExportSources,
    uids: list[tuple[str, str]],
    span: tuple[int | None, int | None],
    continuation: str,
) -> Export:
    checks = Violations()
    project = auth.project()
    dataset_id, in_dataset = read.dataset_id, read.sources
    for i, source_id in enumerate(request.source_ids):
        checks.check(
            source_id in in_dataset,
            f"source_ids[{i}]",
            f"{source_id} is not a source of the dataset",
        )
    for i, (source_hex, _) in enumerate(uids):
        checks.check(
            source_hex in in_dataset,
            f"comment_uids[{i}]",
            f"source {source_hex} is not a source of the dataset",
        )
    checks.raise_if_any()

    bound = ExportDatasetRequest(owner=request.owner, name=request.name)
    for name in _FILTERS:
        value = getattr(request, name)
        if isinstance(value, str | int):
            setattr(bound, name, value)
        else:
            getattr(bound, name).extend(value)
    follow = isinstance(request, StreamExportDatasetRequest) and request.follow
    # A follow stream's continuations serve only follow streams, and the others' only others.
    method = f"{_METHOD}#follow" if follow else _METHOD
    token_query = pagination.fingerprint(
        f"{method}#{dataset_id}", project.organization_id, bound, ()
    )
    start: int | None = None
    live: tuple[int, int] | None = None
    since = 0
    digest_was: int | None = None
    after: tuple[int, int] | None = None
    moves_until = read.move_clock
    version: int | None = None
    if continuation:
        position = _position(checks, continuation, token_query, follow)
        if follow:
            digest_was = position.pop()
        if follow and len(position) == 4:
            _, changed_at, changed_id, since = position
            live = (changed_at, changed_id)
        else:
            moves_until, version_id, key, comment_id = position[:4]
            after = (key, comment_id)
            if follow:
                start, since = position[4:]
            version = version_id or None
    if follow or not continuation:
        # A follow stream shows the version the request names now (a tag may have moved).
        version = await _version_id(dataset_id, request)

    by_uid: dict[int, list[str]] | None = None
    if uids:
        by_uid = {}
        for source_hex, uid_comment in uids:
            by_uid.setdefault(in_dataset[source_hex], []).append(uid_comment)
        source_ids = sorted(by_uid)
    elif request.source_ids:
        source_ids = sorted({in_dataset[s] for s in request.source_ids})
    else:
        source_ids = sorted(in_dataset.values())
    view: changes.View | None = None
    digest = 0
    reset = False
    if follow:
        latest = not request.model_version and not request.model_tag
        view = changes.View(
            read.sources_version, len(in_dataset), version, request.model_tag, latest
        )
        digest = _digest(source_ids, version)
        if digest_was is not None and digest_was != digest:
            # The view changed since the continuation: the stream starts again.
            reset = True
            after = live = start = None
            moves_until, since = read.move_clock, 0
    from_us, to_us = span
    query = store.Query(
        dataset_id=dataset_id,
        source_ids=source_ids,
        by_created=request.order_by == "created_at",
        from_us=from_us,
        to_us=to_us,
        uids=by_uid,
        moves_until=moves_until,
        version_id=version,
        retired=tuple(await datasets.retired_names(dataset_id)) if read.retiring else (),
    )
    # Only a follow stream names deleted comments by uid.
    hex_of = {source: hex_id for hex_id, source in in_dataset.items()} if follow else {}
    limit = request.limit or DEFAULT_LIMIT
    return Export(query, token_query, after, limit, start, live, since, hex_of, view, digest, reset)


# The export's dataset and sources ride in its access check's statement.
for _rpc in ("ExportDataset", "StreamExportDataset"):
    auth.read_with_access(
        f"/corrigo.v1.DatasetService/{_rpc}",
        datasets.SOURCES_WITH_ACCESS,
        lambda request: (request.name,),
    )
