"""Deferred deletes: a source or dataset leaves its project at once, its rows go later.

Deleting a source or a dataset of millions of comments in one transaction would hold
locks and a connection for minutes. Instead `doom_source` / `doom_dataset` make it gone
for every reader in one short transaction: the row loses its project (`project_id`
NULL; every read reaches sources, datasets and correction sessions through their
project, and a NULL is distinct in the unique `(project_id, name)`, so the name is free
at once), the links that show it elsewhere go (a source's datasets, a dataset's
correction sessions and their claims), and a `purge` row records the work.

The rows are then removed by `Purging` in steps of a few thousand rows, each one short
transaction that also renews the server's lease on the purge row (a server that lost it
stops: the work runs once across replicas sharing the database). The last step deletes
the doomed row itself, whose cascades then hold only what a write racing the delete
added, and the purge row. A purge left by a stopped or crashed server is resumed by the
next sweep (`domain.purge_work`) from what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import peewee

from corrigo.server.api.errors import NotFound
from corrigo.server.store.correction import (
    CorrectionClaim,
    CorrectionSession,
    Status,
    for_update,
)
from corrigo.server.store.database import (
    BaseModel,
    Sql,
    atomic,
    database,
    retried,
    utcnow,
    write,
)
from corrigo.server.store.datasets import Dataset, DatasetSource
from corrigo.server.store.ml_models import ModelVersion
from corrigo.server.store.sources import Source

# How long a server's lease on a purge lasts without a step renewing it.
LEASE = datetime.timedelta(seconds=60)


class Kind(enum.StrEnum):
    SOURCE = "source"
    DATASET = "dataset"
    # A label deleted from a taxonomy (`retired_labels`): row_id is its `label_retired` id.
    LABEL = "label"


class Purge(BaseModel):
    kind = peewee.CharField(max_length=16)
    row_id = peewee.BigIntegerField()
    doomed_at = peewee.DateTimeField()
    lease_owner = peewee.CharField(max_length=32, null=True)
    lease_until = peewee.DateTimeField(null=True)

    class Meta:
        primary_key = peewee.CompositeKey("kind", "row_id")


class LeaseLost(Exception):
    """Another server took the purge over (this one's lease ran out)."""


async def _doom(kind: Kind, row_id: int, model: Any, noun: str) -> None:
    """Take the row out of its project and record its purge, in the caller's transaction."""
    left = await database.aexecute(
        model.update(project=None).where(model.id == row_id, model.project.is_null(False))
    )
    if not left:
        raise NotFound(f"the {noun} was deleted", metadata={"resource": noun})
    await database.aexecute(Purge.insert(kind=kind.value, row_id=row_id, doomed_at=utcnow()))


async def doom_source(source_id: int) -> None:
    """The source is gone for readers (its datasets no longer show it) and its name free;
    its comments wait for the purge."""
    async with atomic():
        await _doom(Kind.SOURCE, source_id, Source, "source")
        await database.aexecute(DatasetSource.delete().where(DatasetSource.source == source_id))


async def doom_dataset(dataset_id: int) -> None:
    """The dataset is gone for readers and its name free; its correction sessions leave
    the project, stop their work (DELETING) and give their documents back at once; its
    labellings, predictions and sessions' documents wait for the purge."""

    async def doom() -> None:
        async with atomic():
            sessions = CorrectionSession.select(CorrectionSession.id).where(
                CorrectionSession.dataset == dataset_id
            )
            # The sessions before the dataset, in the order a correction locks them (its
            # session, then the dataset for its labelling): the other order deadlocks.
            await database.list(for_update(sessions.order_by(CorrectionSession.id)))
            await _doom(Kind.DATASET, dataset_id, Dataset, "dataset")
            await database.aexecute(
                CorrectionClaim.delete().where(CorrectionClaim.session.in_(sessions))
            )
            await database.aexecute(
                CorrectionSession.update(project=None, status=Status.DELETING).where(
                    CorrectionSession.dataset == dataset_id
                )
            )
            await database.aexecute(
                DatasetSource.delete().where(DatasetSource.dataset == dataset_id)
            )

    # Again when it conflicted with a correction session's work on the same rows.
    await retried(doom)


@dataclass(frozen=True)
class _Rows:
    """The rows of `table` whose `parent` column is a doomed row's, removed up to `size`
    at a time in the order of `key` (the primary key or unique index after `parent`
    serves it)."""

    table: str
    parent: str
    key: str
    size: int

    def keys(self, after: bool) -> Sql:
        lower = f" AND {self.key} > ?" if after else ""
        return Sql(
            f"SELECT {self.key} FROM {self.table} WHERE {self.parent} = ?{lower} "
            f"ORDER BY {self.key} LIMIT ?"
        )

    def delete(self, after: bool) -> Sql:
        lower = f" AND {self.key} > ?" if after else ""
        return Sql(f"DELETE FROM {self.table} WHERE {self.parent} = ?{lower} AND {self.key} <= ?")


# A comment's delete cascades to its labellings, predictions and correction documents:
# fewer per step.
_COMMENTS = _Rows('"comment"', "source_id", "comment_id", 2000)
_LABELLINGS = _Rows("labelling", "dataset_id", "comment_id", 5000)
_PREDICTIONS = _Rows("prediction", "version_id", "comment_id", 5000)
_CANDIDATES = _Rows("correction_candidate", "session_id", "comment_id", 5000)
_DOCUMENTS = _Rows("correction_document", "session_id", "comment_id", 5000)

# A step aims to take at most this long: a slower one, or one that failed (a statement
# stopped by a time limit), halves the next; quick ones grow back to the full size.
STEP_SECONDS = 0.25
_FEWEST = 16


class StepSize:
    """The part of its full size the next step of a background removal takes, from how
    the last one went (STEP_SECONDS)."""

    def __init__(self) -> None:
        self.scale = 1.0

    def rows(self, full: int) -> int:
        return max(_FEWEST, int(full * self.scale))

    @contextlib.asynccontextmanager
    async def timed(self) -> AsyncIterator[None]:
        """Around one step: halves the next after a slow or failed one, else grows it."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            yield
        except LeaseLost:
            raise
        except Exception:
            self.scale /= 2
            raise
        took = loop.time() - began
        self.scale = self.scale / 2 if took > STEP_SECONDS else min(1.0, self.scale * 2)


_RENEW = Sql("UPDATE purge SET lease_until = ? WHERE kind = ? AND row_id = ? AND lease_owner = ?")


class Purging:
    """The removal of one doomed row by the server holding its lease, a step at a time."""

    def __init__(self, kind: Kind, row_id: int, owner: str) -> None:
        self.kind = kind
        self.row_id = row_id
        self.owner = owner
        self._plan: list[tuple[_Rows, int]] | None = None
        # The last key removed of the plan's first entry (None: from its start).
        self._after: Any = None
        self.size = StepSize()
        self.removed = 0
        # How long to wait before the next step beyond the sweep's pause (never, here).
        self.pause = 0.0

    async def _planned(self) -> list[tuple[_Rows, int]]:
        """What to remove before the row itself (its children of unbounded number)."""
        if self.kind is Kind.SOURCE:
            return [(_COMMENTS, self.row_id)]
        versions = await database.list(
            ModelVersion.select(ModelVersion.id)
            .where(ModelVersion.dataset == self.row_id)
            .order_by(ModelVersion.id)
            .tuples()
        )
        sessions = await database.list(
            CorrectionSession.select(CorrectionSession.id)
            .where(CorrectionSession.dataset == self.row_id)
            .order_by(CorrectionSession.id)
            .tuples()
        )
        return [
            (_LABELLINGS, self.row_id),
            *((_PREDICTIONS, version) for (version,) in versions),
            *((rows, session) for (session,) in sessions for rows in (_CANDIDATES, _DOCUMENTS)),
        ]

    async def step(self) -> bool:
        """Remove the next few thousand rows in one transaction; False once the doomed
        row and its purge are gone. Raises LeaseLost when another server took over."""
        if self._plan is None:
            self._plan = await self._planned()
        if not self._plan:
            async with atomic():
                await self._renew()
                await self._finish()
            return False
        rows, parent = self._plan[0]
        limit = self.size.rows(rows.size)
        after = () if self._after is None else (self._after,)
        async with self.size.timed(), atomic():
            await self._renew()
            keys = (await write(rows.keys(bool(after)), (parent, *after, limit))).rows
            if keys:
                await write(rows.delete(bool(after)), (parent, *after, keys[-1][0]))
        self.removed += len(keys)
        if len(keys) < limit:
            self._plan.pop(0)
            self._after = None
        else:
            self._after = keys[-1][0]
        return True

    async def _renew(self) -> None:
        await renew(self.kind, self.row_id, self.owner)

    async def _finish(self) -> None:
        model = Source if self.kind is Kind.SOURCE else Dataset
        await database.aexecute(model.delete().where(model.id == self.row_id))
        await database.aexecute(
            Purge.delete().where(Purge.kind == self.kind.value, Purge.row_id == self.row_id)
        )


async def renew(kind: Kind, row_id: int, owner: str) -> None:
    """Extend `owner`'s lease on the purge; LeaseLost when another server holds it now."""
    until = Purge.lease_until.db_value(utcnow() + LEASE)
    renewed = await write(_RENEW, (until, kind.value, row_id, owner))
    if not renewed.rowcount:
        raise LeaseLost(f"purge of {kind.value} {row_id}")


async def take_lease(kind: Kind, row_id: int, owner: str) -> bool:
    """Lease the purge to `owner` unless another server holds a live lease on it."""
    now = utcnow()
    taken = await database.aexecute(
        Purge.update(lease_owner=owner, lease_until=now + LEASE).where(
            Purge.kind == kind.value,
            Purge.row_id == row_id,
            Purge.lease_owner.is_null() | (Purge.lease_owner == owner) | (Purge.lease_until < now),
        )
    )
    return bool(taken)


async def release_lease(kind: Kind, row_id: int, owner: str) -> None:
    await database.aexecute(
        Purge.update(lease_owner=None, lease_until=None).where(
            Purge.kind == kind.value, Purge.row_id == row_id, Purge.lease_owner == owner
        )
    )


async def unleased(limit: int) -> list[tuple[Kind, int]]:
    """Purges no server holds a live lease on (never taken, released, or run out), oldest
    first."""
    rows = await database.list(
        Purge.select(Purge.kind, Purge.row_id)
        .where(Purge.lease_owner.is_null() | (Purge.lease_until < utcnow()))
        .order_by(Purge.doomed_at)
        .limit(limit)
        .tuples()
    )
    return [(Kind(kind), int(row_id)) for kind, row_id in rows]
