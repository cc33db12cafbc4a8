"""The export's queries: one page of comments, their labellings, their predictions.

A page costs three queries whatever its size. Comments are read by keyset on
(sort key, internal id) from the per-source indexes `(source, ts_us, id)` and
`(source, created_us, id)`: each source of the dataset is one branch ordered and
limited on its index, and the branches are merged by one UNION ALL ... ORDER BY ...
LIMIT, so a page reads at most `limit` index entries per source, wherever it starts.
Past `MERGE_SOURCES_MAX` sources (SQLite caps compound selects at 500 terms) one
query filters the sources with IN and sorts instead.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import peewee
from corrigo.server.store.database import database
from corrigo.server.store.datasets import Labelling
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


Row = tuple[int, int, bytes]  # (internal id, sort key, serialized Comment)


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


async def comments(query: Query, after: tuple[int, int] | None, limit: int) -> list[Row]:
    """Up to `limit` comments after the keyset position `after`, in export order."""
    key = _key(query)
    columns = (Comment.id, key, Comment.body)
    merge = query.uids is None and 1 < len(query.source_ids) <= MERGE_SOURCES_MAX
    select: peewee.SelectBase
    if not merge:
        select = _filtered(query, Comment.select(*columns).where(_sources(query)), after)
        select = select.order_by(key, Comment.id).limit(limit)
    else:
        branches = [
            _filtered(query, Comment.select(*columns).where(Comment.source == source), after)
            .order_by(key, Comment.id)
            .limit(limit)
            for source in query.source_ids
        ]
        union = functools.reduce(operator.add, branches)
        select = union.order_by(peewee.SQL("2"), peewee.SQL("1")).limit(limit)
    return await database.list(select.tuples())


async def count(query: Query, after: tuple[int, int] | None) -> int:
    """How many comments follow `after` (for progress bars)."""
    select = _filtered(
        query, Comment.select(peewee.fn.COUNT(Comment.id)).where(_sources(query)), after
    )
    return int(await database.scalar(select) or 0)


async def assigned_labels(dataset_id: int, comment_ids: Sequence[int]) -> dict[int, bytes]:
    """Internal comment id -> serialized AssignedLabels, for the labelled comments."""
    rows = await database.list(
        Labelling.select(Labelling.comment, Labelling.assigned)
        .where(Labelling.dataset == dataset_id, Labelling.comment.in_(list(comment_ids)))
        .tuples()
    )
    return dict(rows)


async def predictions(version_id: int, comment_ids: Sequence[int]) -> dict[int, bytes]:
    """Internal comment id -> serialized Predictions of the version."""
    rows = await database.list(
        Prediction.select(Prediction.comment, Prediction.labels)
        .where(Prediction.version == version_id, Prediction.comment.in_(list(comment_ids)))
        .tuples()
    )
    return dict(rows)
