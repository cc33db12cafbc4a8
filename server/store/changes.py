"""What changed in a dataset's view after a position: the comments whose row, labelling,
prediction (of one model version) or removal was written there (`positions`).

A change is (position, comment's internal id): ids are never reused, so the pair orders
every change of a dataset whatever table holds it. Each table is read by keyset on its
change index, one branch per source (as the export merges sources), and the branches are
merged by one UNION ... ORDER BY ... LIMIT: a read examines at most `limit` index entries
per branch, wherever it starts (the loop rule). A comment changed in two tables by one
write is one change.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from corrigo.server.store.database import Sql, fetch, write
from corrigo.server.store.export_pages import MERGE_SOURCES_MAX
from corrigo.server.store.sources import CommentRemoved

# (position, comment's internal id)
Change = tuple[int, int]

# The change index of each table (migration 0050), by what the dataset reaches it through.
_BY_SOURCE = (('"comment"', "id"), ("comment_removed", "comment_id"))
_BY_DATASET = (("labelling", "comment_id"), ("labelling_removed", "comment_id"))


@dataclass(frozen=True)
class Scope:
    """Whose changes: a dataset, the sources it shows, and the model version whose
    predictions it shows (if any)."""

    dataset_id: int
    source_ids: Sequence[int]
    version_id: int | None = None


def statement(scope: Scope, after: Change, below: int, limit: int) -> tuple[Sql, list[int]]:
    """The read of `changed`, and its parameters (`after`'s position below `below`)."""
    # Past MERGE_SOURCES_MAX sources (SQLite caps a compound select's terms) one branch per
    # table reads them all and sorts: not bounded by the request, so it goes to a thread.
    merged = len(scope.source_ids) <= MERGE_SOURCES_MAX
    groups = [[source] for source in scope.source_ids] if merged else [list(scope.source_ids)]
    branches = [(table, "source_id", key, group) for group in groups for table, key in _BY_SOURCE]
    branches += [(table, "dataset_id", key, [scope.dataset_id]) for table, key in _BY_DATASET]
    if scope.version_id is not None:
        branches.append(("prediction", "version_id", "comment_id", [scope.version_id]))
    parts: list[str] = []
    params: list[int] = []
    position, last = after
    for i, (table, parent, key, values) in enumerate(branches):
        marks = ", ".join("?" * len(values))
        which = f"{parent} = ?" if len(values) == 1 else f"{parent} IN ({marks})"
        # The rest of `after`'s position, then the later ones: two index seeks, as SQLite
        # seeks a row value whose last column is the rowid by its first column alone (a
        # page late in a position of a million rows would read them all).
        parts.append(
            f"SELECT * FROM (SELECT change_tx, {key} FROM {table} WHERE {which} "
            f"AND change_tx = ? AND {key} > ? ORDER BY {key} LIMIT ?) AS s{i}"
        )
        parts.append(
            f"SELECT * FROM (SELECT change_tx, {key} FROM {table} WHERE {which} "
            f"AND change_tx > ? AND change_tx < ? ORDER BY change_tx, {key} LIMIT ?) AS l{i}"
        )
        params += (*values, position, last, limit, *values, position, below, limit)
    text = " UNION ".join(parts) + " ORDER BY 1, 2 LIMIT ?"
    return Sql(text, bounded=merged), [*params, limit]


async def changed(scope: Scope, after: Change, below: int, limit: int) -> list[Change]:
    """Up to `limit` changes of `scope` after `after` and at positions below `below` (a
    horizon: `positions.horizon()`), in order."""
    if after[0] >= below:
        # The read's first part takes the rest of `after`'s position whatever `below` is.
        return []
    read, params = statement(scope, after, below, limit)
    return [(int(tx), int(comment)) for tx, comment in await fetch(read, params)]


_REMOVED = "SELECT comment_id, source_id, name FROM comment_removed WHERE comment_id IN ({})"


async def removed(ids: Sequence[int]) -> dict[int, tuple[int, str]]:
    """Of the comments `ids` (internal ids), those deleted whose delete is still kept:
    id -> (source's internal id, comment id in the source). By primary key."""
    if not ids:
        return {}
    read = Sql(_REMOVED.format(", ".join("?" * len(ids))), bounded=True)
    return {int(c): (int(s), name) for c, s, name in await fetch(read, list(ids))}


# Deletes' rows forgotten per statement.
FORGET_STEP = 2000
_FORGET = (
    "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE removed_at < ? LIMIT ?)"
)


async def forget_removed(before: datetime.datetime) -> int:
    """Forget the deletes (`comment_removed`, `labelling_removed`) made before `before`,
    FORGET_STEP rows a statement; how many."""
    stamp = CommentRemoved.removed_at.db_value(before)
    forgotten = 0
    for table, key in (
        ("comment_removed", "comment_id"),
        ("labelling_removed", "dataset_id, comment_id"),
    ):
        statement = Sql(_FORGET.format(table=table, key=key))
        while True:
            done = (await write(statement, (stamp, FORGET_STEP))).rowcount
            forgotten += done
            if done < FORGET_STEP:
                break
    return forgotten
