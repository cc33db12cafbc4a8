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

from corrigo.server.store.database import Sql, delete_older, fetch
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


@dataclass(frozen=True)
class View:
    """What a follow stream shows as a whole, beyond its rows: the dataset's sources (their
    version, moved by each change of the list, and their number, which a source's delete
    lowers) and the model version shown, `version_id`: the tag `tag`'s, or with no tag and
    `latest` the dataset's newest, or else the one pinned."""

    sources_version: int
    sources: int
    version_id: int | None
    tag: str = ""
    latest: bool = False

    def unchanged(self, dataset_id: int) -> tuple[str, list[object]]:
        """A condition on the dataset row `d` that holds while the view is this one, and
        its parameters."""
        text = (
            "d.id = ? AND d.project_id IS NOT NULL AND d.sources_version = ? "
            "AND (SELECT COUNT(*) FROM dataset_source AS ds WHERE ds.dataset_id = d.id) = ?"
        )
        params: list[object] = [dataset_id, self.sources_version, self.sources]
        if self.tag:
            text += (
                " AND (SELECT t.version_id FROM model_tag AS t "
                "WHERE t.dataset_id = d.id AND t.name = ?) = ?"
            )
            params += (self.tag, self.version_id)
        elif self.latest:
            text += (
                " AND COALESCE((SELECT v.id FROM model_version AS v WHERE v.dataset_id = d.id "
                "ORDER BY v.version DESC LIMIT 1), 0) = ?"
            )
            params.append(self.version_id or 0)
        return text, params


# A look's row for a view that changed (no change has a negative comment id).
_VIEW_CHANGED = -1
# A position no change reaches: a look reads the first change after the cursor at any.
_ANY_POSITION = 2**62


async def look(scope: Scope, after: Change, view: View) -> tuple[bool, bool]:
    """Whether `scope` has a change after `after` at any position, and whether `view` is
    no longer the dataset's (or the dataset is gone): one statement."""
    probe, params = statement(scope, after, _ANY_POSITION, 1)
    holds, held = view.unchanged(scope.dataset_id)
    read = Sql(
        f"SELECT * FROM ({probe.text}) AS c UNION ALL SELECT {_VIEW_CHANGED}, {_VIEW_CHANGED} "
        f"WHERE NOT EXISTS (SELECT 1 FROM dataset AS d WHERE {holds})",
        bounded=probe.bounded,
    )
    found = [int(comment) for _, comment in await fetch(read, [*params, *held])]
    return any(c != _VIEW_CHANGED for c in found), _VIEW_CHANGED in found


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


async def forget_removed(before: datetime.datetime) -> int:
    """Forget the deletes (`comment_removed`, `labelling_removed`) made before `before`,
    in bounded steps; how many."""
    stamp = CommentRemoved.removed_at.db_value(before)
    return await delete_older(
        "comment_removed", "comment_id", "removed_at", stamp
    ) + await delete_older("labelling_removed", "dataset_id, comment_id", "removed_at", stamp)
