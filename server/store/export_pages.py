"""The export's query: one page of comments with their labellings and predictions.

A page costs one statement whatever its size. Comments are read by keyset on
(sort key, internal id) from the per-source indexes `(source, ts_us, id)` and
`(source, created_us, id)`: each source of the dataset is one branch ordered and
limited on its index, and the branches are merged by one UNION ALL ... ORDER BY ...
LIMIT, so a page reads at most `limit` index entries per source, wherever it starts.
Past `MERGE_SOURCES_MAX` sources (SQLite caps compound selects at 500 terms) one
query filters the sources with IN and sorts instead. Each comment's labelling and
prediction are correlated lookups by primary key, not joins: their plan cannot change
with the tables' statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corrigo.server.store.database import Sql, fetch, read_page
from corrigo.server.store.datasets import pruned
from corrigo.server.store.sqlite import Pace

MERGE_SOURCES_MAX = 64
# How long a page read ahead waits for its stream to want it before it is let go.
AHEAD_HOLD_SECONDS = 0.5


@dataclass(frozen=True)
class Query:
    """What an export reads, resolved from its request and continuation."""

    dataset_id: int
    # Internal ids of the sources to read, never empty.
    source_ids: Sequence[int]
    by_created: bool
    from_us: int | None
    to_us: int | None
    # With comment_uids: source internal id -> comment ids.
    uids: dict[int, list[str]] | None
    # The move clock's value when the export started: in `timestamp` order, the
    # comments stamped later (moved by a sync that committed after the start) are left
    # out, so none is returned twice.
    moves_until: int
    # The model version whose predictions to include (internal id), if any.
    version_id: int | None
    # Deleted labels still being pruned from the labellings: left out of each page.
    retired: Sequence[str] = ()


# (internal id, sort key, serialized Comment, serialized AssignedLabels or None,
# serialized Predictions or None)
Row = tuple[int, int, bytes, bytes | None, bytes | None]


class _Statement:
    """SQL with `?` placeholders, and its parameters in the same order."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def add(self, text: str, *params: Any) -> _Statement:
        self.parts.append(text)
        self.params.extend(params)
        return self

    def text(self) -> str:
        return " ".join(self.parts)


def _conditions(out: _Statement, query: Query, after: tuple[int, int] | None) -> None:
    """The filters of a comments select, after its sources."""
    key = "c.created_us" if query.by_created else "c.ts_us"
    if after is not None:
        out.add(f"AND ({key}, c.id) > (?, ?)", *after)
    if query.from_us is not None:
        out.add(f"AND {key} >= ?", query.from_us)
    if query.to_us is not None:
        out.add(f"AND {key} <= ?", query.to_us)
    if not query.by_created:
        # Comments moved by a sync that committed after the export began are left out,
        # so none is returned twice.
        out.add("AND (c.ts_moved_us IS NULL OR c.ts_moved_us <= ?)", query.moves_until)


def _sources(out: _Statement, query: Query) -> None:
    if query.uids is not None:
        ors = []
        for source_id, ids in query.uids.items():
            ors.append(f"(c.source_id = ? AND c.comment_id IN ({', '.join('?' * len(ids))}))")
            out.params.extend((source_id, *ids))
        out.parts.append(f"({' OR '.join(ors)})")
    elif len(query.source_ids) == 1:
        out.add("c.source_id = ?", query.source_ids[0])
    else:
        out.add(f"c.source_id IN ({', '.join('?' * len(query.source_ids))})", *query.source_ids)


def _comments(out: _Statement, query: Query, after: tuple[int, int] | None, limit: int) -> None:
    """(id, sort key, body) of up to `limit` comments after `after`, in export order."""
    key = "c.created_us" if query.by_created else "c.ts_us"
    select = f'SELECT c.id, {key} AS k, c.body FROM "comment" AS c WHERE'
    if query.uids is not None or not 1 < len(query.source_ids) <= MERGE_SOURCES_MAX:
        out.add(select)
        _sources(out, query)
        _conditions(out, query, after)
        out.add(f"ORDER BY {key}, c.id LIMIT ?", limit)
        return
    for i, source in enumerate(query.source_ids):
        out.add("UNION ALL SELECT * FROM (" if i else "SELECT * FROM (")
        out.add(f"{select} c.source_id = ?", source)
        _conditions(out, query, after)
        out.add(f"ORDER BY {key}, c.id LIMIT ?) AS b{i}", limit)
    out.add("ORDER BY 2, 1 LIMIT ?", limit)


def page_statement(
    query: Query, after: tuple[int, int] | None, limit: int
) -> tuple[str, list[Any]]:
    """The page's SQL (`?` placeholders) and parameters."""
    return _with_annotations(query, lambda out: _comments(out, query, after, limit))


def _with_annotations(
    query: Query, comments: Callable[[_Statement], None]
) -> tuple[str, list[Any]]:
    """The rows of the comments `comments` selects (id, sort key, body), each with its
    labelling and prediction as the export shows them."""
    out = _Statement().add(
        "SELECT page.id, page.k, page.body, (SELECT l.assigned FROM labelling AS l "
        "WHERE l.dataset_id = ? AND l.comment_id = page.id),",
        query.dataset_id,
    )
    if query.retired:
        # With deleted labels left out, a labelling left with no labels is no labelling.
        out.add(
            "(SELECT l.dismissed FROM labelling AS l "
            "WHERE l.dataset_id = ? AND l.comment_id = page.id),",
            query.dataset_id,
        )
    if query.version_id is None:
        out.add("NULL")
    else:
        out.add(
            "(SELECT p.labels FROM prediction AS p WHERE p.version_id = ? "
            "AND p.comment_id = page.id)",
            query.version_id,
        )
    out.add("FROM (")
    comments(out)
    # No outer ORDER BY (it made SQLite copy the page into a temporary B-tree): the
    # rows are sorted in Python, one pass over rows already in order.
    out.add(") AS page")
    return out.text(), out.params


def _ordered(query: Query, rows: list[Any]) -> list[Row]:
    rows.sort(key=_sort_key)
    return _without_retired(query.retired, rows) if query.retired else rows


def _without_retired(names: Sequence[str], rows: list[Any]) -> list[Row]:
    """Rows of a page read with `dismissed` (after `assigned`), as the export shows them
    while `names` are pruned."""
    shown: list[Row] = []
    for comment_id, key, body, assigned, dismissed, predicted in rows:
        if assigned is not None:
            kept = pruned(bytes(assigned), bytes(dismissed), names)
            assigned = None if kept is None else kept[0]
        shown.append((comment_id, key, body, assigned, predicted))
    return shown


def _sort_key(row: Row) -> tuple[int, int]:
    return row[1], row[0]


def _page_sql(query: Query, after: tuple[int, int] | None, limit: int) -> tuple[Sql, list[Any]]:
    text, params = page_statement(query, after, limit)
    return Sql(text, bounded=_bounded(query)), params


def _bounded(query: Query) -> bool:
    """Whether a page examines about `limit` rows per source whatever the data (the loop
    rule): comments named by uid, or sources merged by keyset on their indexes. Past
    MERGE_SOURCES_MAX sources one query filters and sorts, examining rows it does not
    return. (Comments moved by a sync during the export are skipped by every page: rare,
    and a reader that meets many of them is moved off the loop by its `Pace`.)"""
    return query.uids is not None or len(query.source_ids) <= MERGE_SOURCES_MAX


async def page(query: Query, after: tuple[int, int] | None, limit: int) -> list[Row]:
    """Up to `limit` comments after the keyset position `after`, in export order, each
    with its serialized assigned labels and predictions (None when it has none)."""
    statement, params = _page_sql(query, after, limit)
    return _ordered(query, await fetch(statement, params))


async def rows_of(query: Query, ids: Sequence[int]) -> dict[int, Row]:
    """The comments of `ids` (internal ids) that the export of `query` shows now, by id
    (a follower's changes; ids of comments gone, or of sources the query does not read,
    are not there). By primary key: on the loop."""
    if not ids:
        return {}
    key = "c.created_us" if query.by_created else "c.ts_us"

    def comments(out: _Statement) -> None:
        out.add(
            f'SELECT c.id, {key} AS k, c.body FROM "comment" AS c '
            f"WHERE c.id IN ({', '.join('?' * len(ids))}) AND",
            *ids,
        )
        _sources(out, query)

    text, params = _with_annotations(query, comments)
    rows = await fetch(Sql(text, bounded=True), params)
    shown = _without_retired(query.retired, rows) if query.retired else rows
    return {row[0]: row for row in shown}


Assemble = Callable[[list[Row]], tuple[bytes, int]]
# An assembled page's bytes, and the keyset position after it (None on the last page).
Page = tuple[bytes, tuple[int, int] | None]


def _assembled(rows: list[Row], assemble: Assemble) -> Page:
    assembled, taken = assemble(rows)
    if len(rows) <= taken:
        return assembled, None
    return assembled, (rows[taken - 1][1], rows[taken - 1][0])


class _Ahead:
    """The page after `position`, read while the caller sends the one before it. A caller
    that does not want it within AHEAD_HOLD_SECONDS of its arrival (a client that stopped
    reading) lets it go, and it is read again when wanted: a stalled stream holds only
    the page it is sending."""

    def __init__(
        self,
        read: Callable[[tuple[int, int] | None], Awaitable[Page]],
        position: tuple[int, int] | None,
    ) -> None:
        self._read = read
        self._position = position
        self._task: asyncio.Future[Page] | None = asyncio.ensure_future(read(position))
        self._task.add_done_callback(self._arrived)
        self._letting_go: asyncio.TimerHandle | None = None
        self._wanted = False

    def _arrived(self, task: asyncio.Future[Page]) -> None:
        # A page already asked for is not let go (nor held by a timer once it is taken).
        if not self._wanted and not task.cancelled() and task.exception() is None:
            self._letting_go = asyncio.get_running_loop().call_later(
                AHEAD_HOLD_SECONDS, self._let_go
            )

    def _let_go(self) -> None:
        self._task = None

    async def page(self) -> Page:
        self._wanted = True
        if self._letting_go is not None:
            self._letting_go.cancel()
        if self._task is None:
            return await self._read(self._position)
        return await self._task

    async def settled(self) -> None:
        """Wait for a read still running (never cut mid-read), and drop what it read."""
        if self._letting_go is not None:
            self._letting_go.cancel()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()


async def pages(
    query: Query, limit: int, after: tuple[int, int] | None, assemble: Assemble
) -> AsyncGenerator[Page, None]:
    """Every page from `after` on, each read with up to `limit` rows and assembled by
    `assemble` (which answers the page's bytes and how many rows they hold): (bytes,
    keyset position after the page, None on the last page). Each page is its own unit
    of work, and the next one is read while the caller sends this one (`_Ahead`): no
    connection is held while the caller waits on its client."""
    pace = Pace()

    async def read(position: tuple[int, int] | None) -> Page:
        statement, params = _page_sql(query, position, limit)
        rows = await read_page(statement, params, pace)
        return _assembled(_ordered(query, rows), assemble)

    ahead = _Ahead(read, after)
    try:
        while True:
            assembled, position = await ahead.page()
            if position is None:
                yield assembled, None
                return
            ahead = _Ahead(read, position)
            yield assembled, position
    finally:
        await ahead.settled()


async def count(query: Query, after: tuple[int, int] | None) -> int:
    """How many comments follow `after` (for progress bars): a count examines every one,
    so it runs on the store's threads."""
    out = _Statement().add('SELECT COUNT(c.id) FROM "comment" AS c WHERE')
    _sources(out, query)
    _conditions(out, query, after)
    rows = await fetch(Sql(out.text()), out.params)
    return int(rows[0][0] or 0)
