"""Deleting a label: gone from the taxonomy and from every labelling at once for readers,
pruned from the stored labellings afterwards in bounded steps.

Rewriting every labelling of a dataset of millions of comments in the delete's own
transaction would outlast any call's deadline. Instead `retire` removes the label and its
descendants from `label_def` and records the name in `label_retired` in one short
transaction, with a `purge` row of kind "label" (`store.purge`) for the pruning. While
that row exists every read of a labelling (the export, GetLabelling, a correction
session's documents) leaves the name and its descendants out (`datasets.pruned`), and
adding the name again answers FAILED_PRECONDITION (`datasets.add_label_defs`).

`Pruning` rewrites the labellings a page at a time in comment order, each page one short
transaction that locks the rows it rewrites (a concurrent labelling write is never
overwritten) and renews the server's lease. It starts `settle()` after the delete: a
labelling write whose labels were checked against the taxonomy before the delete
committed has landed by then (its wait for a connection and each of its statements are
bounded by the statement limit), so no stored labelling keeps the name once the last page
is done. The last page removes the `label_retired` row and the purge row together; a
pruning left by a stopped server is resumed by the purge sweep from its start.
"""

from __future__ import annotations

import datetime

import peewee

from corrigo.server.api.errors import NotFound
from corrigo.server.store import connections
from corrigo.server.store.correction import for_update
from corrigo.server.store.database import Sql, as_datetime, atomic, database, fetch, utcnow, write
from corrigo.server.store.datasets import (
    LABEL_SEPARATOR,
    LabelDef,
    Labelling,
    LabelRetired,
    dataset_ref,
    labelling_writes,
    lock_taxonomy,
    pruned,
)
from corrigo.server.store.purge import Kind, Purge, StepSize, renew

# Labellings one step rewrites at most (fewer after a slow step: `purge.StepSize`).
PAGE = 2000
# The longest pause between two steps while the pruning waits to start.
_WAIT_STEP = 5.0

_RETIRED = Sql("SELECT dataset_id, name, retired_at FROM label_retired WHERE id = ?", bounded=True)


def settle() -> datetime.timedelta:
    """How long after a delete the pruning starts: enough for a labelling write checked
    before the delete to wait for a connection and run its statements, retries included."""
    return datetime.timedelta(seconds=4 * connections.statement_limit())


async def retire(dataset_id: int, name: str) -> int:
    """Remove the label and its descendants from the taxonomy, and record the name for
    readers to leave out and for the pruning; answers the purge's row id."""
    # Byte for byte: Peewee's startswith is LIKE, which ignores case and reads `%`, `_`
    # and `\` as wildcards; `substr` counts characters alike on both databases.
    prefix = name + LABEL_SEPARATOR
    descendants = peewee.fn.SUBSTR(LabelDef.name, 1, len(prefix)) == prefix
    async with atomic(dataset_ref(dataset_id)):
        await lock_taxonomy(dataset_id)
        deleted = await database.aexecute(
            LabelDef.delete().where(
                LabelDef.dataset == dataset_id, (LabelDef.name == name) | descendants
            )
        )
        if not deleted:
            raise NotFound(f"label {name!r} is not in the taxonomy")
        now = utcnow()
        row_id = int(
            await database.aexecute(
                LabelRetired.insert(dataset=dataset_id, name=name, retired_at=now)
            )
        )
        await database.aexecute(Purge.insert(kind=Kind.LABEL.value, row_id=row_id, doomed_at=now))
    return row_id


class Pruning:
    """The pruning of one deleted label's name by the server holding its lease, a step at
    a time (the interface of `purge.Purging`)."""

    def __init__(self, row_id: int, owner: str) -> None:
        self.row_id = row_id
        self.owner = owner
        # The last comment id rewritten (0: from the start).
        self._after = 0
        self.size = StepSize()
        self.removed = 0
        # How long to wait before the next step (while the pruning waits to start).
        self.pause = 0.0

    async def step(self) -> bool:
        """Rewrite the next page of labellings; False once the name is pruned and its
        records gone. Raises LeaseLost when another server took over."""
        rows = await fetch(_RETIRED, (self.row_id,))
        if not rows:
            # Its dataset was deleted (the record went with it by cascade).
            async with atomic():
                await renew(Kind.LABEL, self.row_id, self.owner)
                await self._finish()
            return False
        dataset_id, name, retired_at = rows[0]
        start = as_datetime(retired_at) or utcnow()
        wait = (start + settle() - utcnow()).total_seconds()
        if wait > 0:
            await renew(Kind.LABEL, self.row_id, self.owner)
            self.pause = min(wait, _WAIT_STEP)
            return True
        self.pause = 0.0
        async with self.size.timed():
            return await self._page(dataset_id, name, self.size.rows(PAGE))

    async def _page(self, dataset_id: int, name: str, limit: int) -> bool:
        async with atomic():
            await renew(Kind.LABEL, self.row_id, self.owner)
            page = await database.list(
                for_update(
                    Labelling.select(
                        Labelling.comment,
                        Labelling.assigned,
                        Labelling.dismissed,
                        Labelling.updated_at,
                    )
                    .where(Labelling.dataset == dataset_id, Labelling.comment > self._after)
                    .order_by(Labelling.comment)
                    .limit(limit)
                ).tuples()
            )
            changed = []
            for comment_id, assigned, dismissed, updated_at in page:
                stored = bytes(assigned), bytes(dismissed)
                kept = pruned(*stored, [name])
                if kept != stored:
                    # The labelling keeps its time: the annotator did not change it.
                    stamp = Labelling.updated_at.db_value(updated_at)
                    changed.append((comment_id, *(kept or (b"", b"")), stamp))
            for statement, params in labelling_writes(dataset_id, changed):
                await write(statement, params)
            if len(page) < limit:
                await self._finish()
        self.removed += len(changed)
        if len(page) < limit:
            return False
        self._after = page[-1][0]
        return True

    async def _finish(self) -> None:
        await database.aexecute(LabelRetired.delete().where(LabelRetired.id == self.row_id))
        await database.aexecute(
            Purge.delete().where(Purge.kind == Kind.LABEL.value, Purge.row_id == self.row_id)
        )
