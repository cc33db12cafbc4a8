"""Leases on work that one server at a time does (the correction sweep), whichever the
replicas or workers sharing the database: a row per kind of work (created by its
migration), taken with a conditional UPDATE like the correction sessions' leases."""

from __future__ import annotations

import datetime

import peewee

from corrigo.server.store import connections
from corrigo.server.store.database import BaseModel, database, utcnow

# A lease is a one-row write: when another process holds the database's write lock it
# gives up this soon (DeadlineExceeded) rather than hold a write connection while it waits.
STATEMENT_SECONDS = 1.0


class WorkLease(BaseModel):
    name = peewee.CharField(max_length=64, primary_key=True)
    owner = peewee.CharField(max_length=32, null=True)
    until = peewee.DateTimeField(null=True)


async def take(name: str, owner: str, period: datetime.timedelta) -> bool:
    """Lease `name` to `owner` for `period` when no other server holds a live lease on it
    (renewing it when `owner` holds it); whether `owner` holds it now."""
    now = utcnow()
    with connections.limited(STATEMENT_SECONDS):
        taken = await database.aexecute(
            WorkLease.update(owner=owner, until=now + period).where(
                WorkLease.name == name,
                WorkLease.owner.is_null() | (WorkLease.owner == owner) | (WorkLease.until < now),
            )
        )
    return bool(taken)


async def release(name: str, owner: str) -> None:
    """Give `name` back when `owner` holds it, so another server takes it at once."""
    await database.aexecute(
        WorkLease.update(owner=None, until=None).where(
            WorkLease.name == name, WorkLease.owner == owner
        )
    )
