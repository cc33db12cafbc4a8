"""The export's query: one page of comments with their labellings and predictions.

A page costs one query whatever its size. Comments are read by keyset on
(sort key, internal id) from the per-source indexes `(source, ts_us, id)` and
`(source, created_us, id)`: each source of the dataset is one branch ordered and
limited on its index, and the branches are merged by one UNION ALL ... ORDER BY ...
LIMIT, so a page reads at most `limit` index entries per source, wherever it starts.
Past `MERGE_SOURCES_MAX` sources (SQLite caps compound selects at 500 terms) one
query filters the sources with IN and sorts instead.
"""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from corrigo.server.store.database import database
from corrigo.server.store.datasets import Labelling
from corrigo.server.store.drivers import SqliteDatabase, driver_errors, produce_in_thread
from corrigo.server.store.models import Prediction
from corrigo.server.store.sources import Comment

MERGE_SOURCES_MAX = 64


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
    # The export's start: in `timestamp` order, comments whose timestamp a sync changed
    # after it are left out, so none is returned twice.
    started_us: int
    # The model version whose predictions to include (internal id), if any.
    version_id: int | None


# (internal id, sort key, serialized Comment, serialized AssignedLabels or None,
# serialized Predictions or None)
Row = tuple[int, int, bytes, bytes | None, bytes | None]


def _key(query: Query) -> peewee.Field:
    return Comment.created_us if query.by_created else Comment.ts_us


def _filtered(query: Query, select: peewee.Select, after: tuple[int, int] | None) -> peewee.Select:
    key = _key(query)
    if after is not None:
        select = select.where(peewee.Tuple(key, Comment.id) > peewee.Tuple(*after))
    if query.from_us is not None:
        select = select.where(key >= query.from_us)
    if query.to_us is not None:
        select = select.where(key <= query.to_us)
    if not query.by_created:
        select = select.where(
            Comment.ts_moved_us.is_null() | (Comment.ts_moved_us <= query.started_us)
        )
    return select


def _sources(query: Query) -> peewee.Expression:
    if query.uids is not None:
        parts = [
            (Comment.source == source_id) & Comment.comment_id.in_(ids)
            for source_id, ids in query.uids.items()
        ]
        return functools.reduce(operator.or_, parts)
    if len(query.source_ids) == 1:
        return Comment.source == query.source_ids[0]
    return Comment.source.in_(list(query.source_ids))


def _comments(query: Query, after: tuple[int, int] | None, limit: int) -> peewee.SelectBase:
    """(id, sort key, body) of up to `limit` comments after `after`, in export order."""
    key = _key(query)
    columns = (Comment.id, key, Comment.body)
    if query.uids is not None or not 1 < len(query.source_ids) <= MERGE_SOURCES_MAX:
        select = _filtered(query, Comment.select(*columns).where(_sources(query)), after)
        return select.order_by(key, Comment.id).limit(limit)
    branches = [
        _filtered(query, Comment.select(*columns).where(Comment.source == source), after)
        .order_by(key, Comment.id)
        .limit(limit)
        for source in query.source_ids
    ]
    union = functools.reduce(operator.add, branches)
    return union.order_by(peewee.SQL("2"), peewee.SQL("1")).limit(limit)


def _select(query: Query, after: tuple[int, int] | None, limit: int) -> peewee.SelectBase:
    """The page's query: the page's comments, each with its labelling and its prediction
    looked up by primary key. (Correlated lookups rather than joins: their plan cannot
    change with the tables' statistics. Planned as a join on PostgreSQL right after a
    bulk load, it hashed the dataset's whole labelling table for every page: 200,000
    comments took 138 s instead of 2.)"""
    page = _comments(query, after, limit).alias("page")
    key = page.c.created_us if query.by_created else page.c.ts_us
    assigned = Labelling.select(Labelling.assigned).where(
        (Labelling.dataset == query.dataset_id) & (Labelling.comment == page.c.id)
    )
    predicted: peewee.Node = peewee.Value(None)
    if query.version_id is not None:
        predicted = Prediction.select(Prediction.labels).where(
            (Prediction.version == query.version_id) & (Prediction.comment == page.c.id)
        )
    # In the page's order, which `_ordered` ensures (no ORDER BY: see there).
    select = peewee.Select([page], [page.c.id, key, page.c.body, assigned, predicted])
    return select.bind(database.obj)


# Building a page's query with Peewee and rendering its SQL costs more than reading
# and sending the page, so an export renders it once, with these stand-ins for the
# values that change from page to page (the keyset position) and from export to export
# (its start), and then only swaps the values in. The stand-ins lie far outside every
# real value (timestamps are years 1..9999 in microseconds, ids are positive).
_KEY_MARK = -(2**62) - 1_000_003
_ID_MARK = -(2**62) - 2_000_003
_STARTED_MARK = -(2**62) - 3_000_003


@dataclass(frozen=True)
class Statement:
    """A page query's SQL, and where its changing values go among its parameters."""

    sql: str
    params: tuple[Any, ...]
    key_at: tuple[int, ...]
    id_at: tuple[int, ...]
    started_at: tuple[int, ...]

    @classmethod
    def render(cls, select: peewee.SelectBase) -> Statement:
        sql, params = select.sql()

        def where(mark: int) -> tuple[int, ...]:
            return tuple(i for i, v in enumerate(params) if isinstance(v, int) and v == mark)

        return cls(sql, tuple(params), where(_KEY_MARK), where(_ID_MARK), where(_STARTED_MARK))

    def bind(self, after: tuple[int, int] | None, started_us: int) -> list[Any]:
        params = list(self.params)
        for i in self.started_at:
            params[i] = started_us
        if after is not None:
            for i in self.key_at:
                params[i] = after[0]
            for i in self.id_at:
                params[i] = after[1]
        return params


Shape = tuple[Any, ...]


@functools.lru_cache(maxsize=256)
def _statement(shape: Shape, first: bool, limit: int, backend: str) -> Statement:
    """The rendered statement of a query shape (see `_shape`); `backend`, the database's
    class, decides the SQL dialect."""
    dataset_id, source_ids, by_created, from_us, to_us, uids, version_id = shape
    query = Query(
        dataset_id=dataset_id,
        source_ids=list(source_ids),
        by_created=by_created,
        from_us=from_us,
        to_us=to_us,
        uids=None if uids is None else {source: list(ids) for source, ids in uids},
        started_us=_STARTED_MARK,
        version_id=version_id,
    )
    return Statement.render(_select(query, None if first else (_KEY_MARK, _ID_MARK), limit))


def _shape(query: Query) -> Shape:
    """The query's fields but its start, hashable: the statement cache's key."""
    uids = None
    if query.uids is not None:
        uids = tuple(sorted((source, tuple(ids)) for source, ids in query.uids.items()))
    return (
        query.dataset_id,
        tuple(query.source_ids),
        query.by_created,
        query.from_us,
        query.to_us,
        uids,
        query.version_id,
    )


def _statement_for(query: Query, after: tuple[int, int] | None, limit: int) -> Statement:
    db = database.obj
    backend = f"{type(db).__module__}.{type(db).__qualname__}"
    return _statement(_shape(query), after is None, limit, backend)


async def page(query: Query, after: tuple[int, int] | None, limit: int) -> list[Row]:
    """Up to `limit` comments after the keyset position `after`, in export order, each
    with its serialized assigned labels and predictions (None when it has none): one
    query."""
    statement = _statement_for(query, after, limit)
    cursor = await database.obj.aexecute_sql(statement.sql, statement.bind(after, query.started_us))
    return _ordered(cursor.fetchall())


def _ordered(rows: list[Row]) -> list[Row]:
    # The SQL leaves the page's order to its inner query (an outer ORDER BY made SQLite
    # copy the page into a temporary B-tree); sorting rows already in order is one pass.
    rows.sort(key=_sort_key)
    return rows


def _sort_key(row: Row) -> tuple[int, int]:
    return row[1], row[0]


Assemble = Callable[[list[Row]], tuple[bytes, int]]
# An assembled page's bytes, and the keyset position after it (None on the last page).
Page = tuple[bytes, tuple[int, int] | None]


async def pages(
    query: Query, limit: int, after: tuple[int, int] | None, assemble: Assemble
) -> AsyncGenerator[Page, None]:
    """Every page from `after` on, each read with up to `limit` rows and assembled by
    `assemble` (which answers the page's bytes and how many rows they hold): (bytes,
    keyset position after the page, None on the last page). On SQLite pages are read on
    the event loop's thread a few rows at a time (`LoopReader`), and in a connection's
    thread from the first page the loop could not read quickly (the database busy, or
    the rows not cached); elsewhere each page's successor is read while the caller sends
    it (`Reader`)."""
    db = database.obj
    if not isinstance(db, SqliteDatabase):
        async for item in _pages_read_ahead(query, limit, after, assemble):
            yield item
        return
    first = _statement_for(query, None, limit)
    later = _statement_for(query, (0, 0), limit)
    position = after
    reader = db.loop_reader()
    if reader is not None:
        try:
            while not reader.slow:
                statement = first if position is None else later
                rows = await reader.rows(statement.sql, statement.bind(position, query.started_us))
                if rows is None:
                    break
                assembled, position = _assembled(_ordered(rows), assemble)
                yield assembled, position
                if position is None:
                    return
        finally:
            reader.close()
    async for item in _pages_in_thread(query, position, first, later, assemble):
        yield item


def _assembled(rows: list[Row], assemble: Assemble) -> Page:
    assembled, taken = assemble(rows)
    if len(rows) <= taken:
        return assembled, None
    return assembled, (rows[taken - 1][1], rows[taken - 1][0])


async def _pages_in_thread(
    query: Query,
    after: tuple[int, int] | None,
    first: Statement,
    later: Statement,
    assemble: Assemble,
) -> AsyncGenerator[Page, None]:
    """`pages` with the whole loop in the SQLite connection's own thread, which reads
    page after page without waiting for the event loop between them."""
    connection = await database.obj.aconnect()  # the task's, released when it ends

    def produce(conn: Any, emit: Callable[[Any], None], stopping: Any) -> None:
        position = after
        while not stopping.is_set():
            statement = first if position is None else later
            cursor = conn.execute(statement.sql, statement.bind(position, query.started_us))
            try:
                rows = _ordered(cursor.fetchall())
            finally:
                cursor.close()
            assembled, position = _assembled(rows, assemble)
            emit((assembled, position))
            if position is None:
                return

    async for item in produce_in_thread(connection, produce):
        yield item


async def _pages_read_ahead(
    query: Query, limit: int, after: tuple[int, int] | None, assemble: Assemble
) -> AsyncGenerator[Page, None]:
    connection = await database.obj.aconnect()  # the task's, released when it ends
    reader = Reader(query, limit, connection, assemble)
    try:
        position = after
        while True:
            assembled, position = await reader.read(position)
            yield assembled, position
            if position is None:
                return
    finally:
        await reader.close()


class Reader:
    """Reads an export's pages one after the other on one connection, each assembled by
    `assemble`, and starts the query of the next page (from the position after the rows
    the page took) as soon as a page is read, so the database reads it while the caller
    sends this one. Use from a single task, and `close` it: a read in flight is awaited,
    never abandoned."""

    def __init__(self, query: Query, limit: int, connection: Any, assemble: Assemble) -> None:
        self.query, self.limit, self._connection, self._assemble = (
            query,
            limit,
            connection,
            assemble,
        )
        self._ahead: asyncio.Future[Page] | None = None
        self._ahead_after: tuple[int, int] | None = None

    def _start(self, after: tuple[int, int] | None) -> asyncio.Future[Page]:
        statement = _statement_for(self.query, after, self.limit)
        return asyncio.ensure_future(
            self._execute(statement.sql, statement.bind(after, self.query.started_us))
        )

    async def _execute(self, sql: str, params: list[Any]) -> Page:
        with driver_errors:
            cursor = await self._connection.execute(sql, params)
        return _assembled(_ordered(cursor.fetchall()), self._assemble)

    async def read(self, after: tuple[int, int] | None) -> Page:
        """The page after `after`, as `pages` yields it."""
        pending, self._ahead = self._ahead, None
        if pending is not None and self._ahead_after != after:
            await pending  # read for another position: wait it out, then drop it
            pending = None
        if pending is None:
            pending = self._start(after)
        assembled, position = await pending
        if position is not None:
            self._ahead_after = position
            self._ahead = self._start(position)
        return assembled, position

    async def close(self) -> None:
        pending, self._ahead = self._ahead, None
        if pending is not None:
            await asyncio.wait([pending])


async def count(query: Query, after: tuple[int, int] | None) -> int:
    """How many comments follow `after` (for progress bars)."""
    select = _filtered(
        query, Comment.select(peewee.fn.COUNT(Comment.id)).where(_sources(query)), after
    )
    return int(await database.scalar(select) or 0)
