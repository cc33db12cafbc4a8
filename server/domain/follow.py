"""Follow mode of the streamed export: the snapshot, then each change as it commits.

A follow stream takes a horizon (`positions.horizon`) before its snapshot's first read,
exports the snapshot as any stream does (its continuations carry that position), then
reads the changes of its scope after it (`changes.changed`): each comment changed as the
export shows it now, each comment deleted as its uid. The live part's continuation is
the position of the last change sent, so a resumed stream skips nothing; a change may
come twice (once in a snapshot page read after it committed, once live).

Between reads the stream holds no connection. It looks again when a write commits (this
process's at once, `commits`; other processes' on PostgreSQL when their notice comes,
`commit_notices`) and every POLL_SECONDS whatever happens, first with a
read of what changed at any position (cheap, and on SQLite a horizon is a write), then,
when something did, below a fresh horizon.

What a stream shows as a whole (its sources, its model version: `changes.View`) is
checked in the same first read. When it moved, the stream plans its export again; if the
sources read or the version shown differ, it sends a reset and starts over with a new
snapshot, since a source linked, unlinked or deleted, or another version, changes comments
no row change names. Continuations carry the view's digest, so a resume into a changed
view resets as well.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import ClassVar

from corrigo.server.api import wire
from corrigo.server.api.errors import (
    FailedPrecondition,
    InvalidArgument,
    TooManyFollowers,
    Unavailable,
)
from corrigo.server.config import DEFAULT_CHANGE_RETENTION, DEFAULT_MAX_FOLLOWERS
from corrigo.server.domain import dataset_export
from corrigo.server.domain.dataset_export import Export, comments_field, continuation_field
from corrigo.server.ops import background, metrics
from corrigo.server.store import changes, commits, positions
from corrigo.server.store import export_pages as store
from corrigo.v1 import errors_pb2
from corrigo.v1.datasets_pb2 import StreamExportDatasetRequest, StreamExportDatasetResponse

# How often a stream looks for other processes' commits, and how long it stays silent.
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
# How often at most the lag metric is worked out.
LAG_SECONDS = 0.25
# Changes read at once, in messages of the stream's limit: a few pages' worth per read.
BATCH_PAGES = 4
# Taken off the retention for the transactions that ran while a position was current.
RETENTION_MARGIN_SECONDS = 600.0
_RESPONSE = StreamExportDatasetResponse.DESCRIPTOR.fields_by_name
_DELETED = _RESPONSE["deleted_uids"].number
_LIVE = wire.true_flag(_RESPONSE["live"].number)
_RESET = wire.true_flag(_RESPONSE["reset"].number)
# A keyset position before every comment (sort keys are microseconds since the epoch).
_BEFORE_ALL = (-(2**62), 0)
# Filters a follow stream cannot take: a change is not placed in a time range or uid list.
_NOT_WITH_FOLLOW = ("comment_uids", "from", "to")


class _Followers:
    limit = DEFAULT_MAX_FOLLOWERS
    retention = DEFAULT_CHANGE_RETENTION
    current = 0
    # Per stream behind (its cursor), since when it has had changes not yet sent.
    behind: ClassVar[dict[object, float]] = {}
    reported = 0.0

    @classmethod
    def report_lag(cls) -> None:
        """The lag metric, at most every LAG_SECONDS: every stream looks at each commit,
        and each report reads every stream's."""
        now = time.monotonic()
        if now - cls.reported < LAG_SECONDS:
            return
        cls.reported = now
        metrics.follow_lag(max((now - since for since in cls.behind.values()), default=0.0))


def configure(*, max_followers: int, retention_seconds: float) -> None:
    _Followers.limit = max_followers
    _Followers.retention = retention_seconds


def _check_retention(since: int) -> None:
    """FAILED_PRECONDITION when the deletes after a position read `since` may have been
    forgotten: older than the retention, less a margin (up to 10 minutes) for the
    transactions that were still running then."""
    retention = _Followers.retention
    if time.time() - since > retention - min(RETENTION_MARGIN_SECONDS, retention / 2):
        raise FailedPrecondition(
            f"this follow position is older than the {retention:g} s that deletes are kept "
            "(--change-retention): deletes since may be forgotten; export the dataset again",
            reason=errors_pb2.CHANGES_FORGOTTEN,
        )


def check(request: StreamExportDatasetRequest) -> None:
    """INVALID_ARGUMENT for a filter follow mode does not take."""
    for name in _NOT_WITH_FOLLOW:
        if getattr(request, name):
            raise InvalidArgument.field(name, f"cannot be combined with follow (got {name})")


@contextlib.contextmanager
def _slot() -> Iterator[None]:
    if _Followers.current >= _Followers.limit:
        raise TooManyFollowers(
            f"this server process already follows {_Followers.limit} export streams "
            "(--max-followers); retry later or on another replica"
        )
    _Followers.current += 1
    metrics.following(1)
    try:
        yield
    finally:
        _Followers.current -= 1
        metrics.following(-1)


class _ViewChanged(Exception):
    """What the stream shows changed as a whole: it starts over with `export`."""

    def __init__(self, export: Export) -> None:
        super().__init__("the stream's view changed")
        self.export = export


async def stream(request: StreamExportDatasetRequest) -> AsyncIterator[bytes]:
    """A follow stream's messages: the snapshot's pages (unless the continuation is in the
    live part), then the live changes, for as long as the client reads; a reset and all
    of it again each time its view changes."""
    check(request)
    with _slot():
        export = await dataset_export.plan(request)
        while True:
            if export.follow_start is None and export.live is None:
                # Taken before the snapshot's first read: what commits later comes live.
                since = int(time.time())
                export = replace(export, follow_start=await positions.horizon(), since=since)
            if export.reset:
                # Resumed from here, the stream starts the new snapshot.
                yield _RESET + continuation_field(export.continuation(_BEFORE_ALL))
            _check_retention(export.since)
            live = export.live
            if live is None:
                assert export.follow_start is not None
                async for message in dataset_export.snapshot(export, request.include_total):
                    yield message
                live = (export.follow_start, 0)
                # The first live message, at once: the snapshot is complete.
                yield _tail(export, live, export.since)
            try:
                async for message in _live(request, export, live):
                    yield message
            except _ViewChanged as changed:
                export = changed.export


async def _live(
    request: StreamExportDatasetRequest, export: Export, cursor: changes.Change
) -> AsyncIterator[bytes]:
    query = export.query
    scope = changes.Scope(query.dataset_id, query.source_ids, query.version_id)
    batch = export.limit * BATCH_PAGES
    quiet_since = time.monotonic()
    since = export.since
    me = object()
    work = background.current()
    try:
        while True:
            if work.draining:
                raise Unavailable(
                    "the server is shutting down: resume the stream from its last "
                    "continuation, on another replica or once it is back",
                    reason=errors_pb2.SERVER_STOPPING,
                )
            _check_retention(since)
            seen = commits.seen()
            checked = int(time.time())
            assert export.view is not None
            anything, view_changed = await changes.look(scope, cursor, export.view)
            if view_changed:
                fresh = await dataset_export.review(request, export)
                if fresh.digest != export.digest:
                    raise _ViewChanged(replace(fresh, reset=True))
                export = replace(export, view=fresh.view)
            if anything:
                _Followers.behind.setdefault(me, time.monotonic())
                below = await positions.horizon()
                # Below one horizon, batch after batch: a backlog costs no look in between.
                while found := await changes.changed(scope, cursor, below, batch):
                    async for message in _messages(export, found, since):
                        yield message
                    quiet_since = time.monotonic()
                    cursor = found[-1]
                    if len(found) < batch:
                        break
                # Every change below the horizon was read.
                cursor, since = max(cursor, (below, 0)), checked
            else:
                _Followers.behind.pop(me, None)
                since = checked
            _Followers.report_lag()
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield _tail(export, cursor, since)
                quiet_since = time.monotonic()
            await commits.after(seen, POLL_SECONDS)
    finally:
        _Followers.behind.pop(me, None)


async def _messages(
    export: Export, found: Sequence[changes.Change], since: int
) -> AsyncIterator[bytes]:
    """The messages of `found`, in order, read a message's worth (`export.limit`) of
    changes at a time: a follower that stops reading holds one page of rows, as a
    stalled snapshot does (their continuations say the changes before them were read
    `since`)."""
    # A comment changed twice is sent once, at its last change.
    last = {comment: at for at, comment in enumerate(found)}
    ordered = [found[at] for at in sorted(last.values())]
    for at in range(0, len(ordered), export.limit):
        async for message in _part(export, ordered[at : at + export.limit], since):
            yield message


async def _part(export: Export, part: Sequence[changes.Change], since: int) -> AsyncIterator[bytes]:
    """Messages of up to a page of changes: runs of comments changed and of comments
    deleted, in order, each message one kind."""
    ids = [comment for _, comment in part]
    rows = await store.rows_of(export.query, ids)
    gone = await changes.removed([i for i in ids if i not in rows])
    # (row or None for a delete, deleted uid, change), in order.
    shown: list[tuple[store.Row | None, str, changes.Change]] = []
    for change in part:
        row = rows.get(change[1])
        if row is not None:
            shown.append((row, "", change))
        elif change[1] in gone:
            source, name = gone[change[1]]
            shown.append((None, f"{export.source_hex[source]}.{name}", change))
    for is_delete, group in itertools.groupby(shown, key=lambda item: item[0] is None):
        run = list(group)
        if is_delete:
            uids = b"".join(wire.field(_DELETED, uid.encode()) for _, uid, _ in run)
            yield uids + _tail(export, run[-1][2], since)
        else:
            changed = [(row, change) for row, _, change in run if row is not None]
            for message in _comments(export, changed, since):
                yield message


def _comments(
    export: Export, run: list[tuple[store.Row, changes.Change]], since: int
) -> Iterator[bytes]:
    """Messages of a run of comments changed (a message ends early when its comments
    would pass the page's size, as a snapshot page does)."""
    while run:
        body, taken = comments_field([row for row, _ in run], len(run))
        position = run[taken - 1][1]
        run = run[taken:]
        yield body + _tail(export, position, since)


def _tail(export: Export, position: changes.Change, since: int) -> bytes:
    """A live message's continuation (resuming after `position`) and its `live` flag; alone,
    a keepalive."""
    return continuation_field(export.live_continuation(position, since)) + _LIVE
