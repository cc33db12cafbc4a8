"""Request ids (AIP-155): a create's answer kept for a day under its caller, RPC and id.

A call claims its id in the transaction its handler's writes join, and records its answer
there too: the create and the answer commit together or not at all, so a retry finds
either the answer or nothing (a concurrent twin waits on the claim's row until then).
"""

from __future__ import annotations

import datetime

import peewee

from corrigo.server.store.database import BaseModel, as_datetime, database, delete_older, utcnow
from corrigo.server.store.identity import User
from corrigo.server.store.sources import BytesField

# How long an id answers with its first result; an older row is swept, or claimed anew.
KEPT = datetime.timedelta(days=1)


class RequestId(BaseModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    method = peewee.TextField()
    request_id = peewee.TextField()
    # NULL only inside the transaction of the call that claimed the id.
    answer = BytesField(null=True)
    created_at = peewee.DateTimeField(index=True)

    class Meta:
        primary_key = peewee.CompositeKey("user", "method", "request_id")


def _key(user_id: int, method: str, request_id: str) -> peewee.Expression:
    return (
        (RequestId.user == user_id)
        & (RequestId.method == method)
        & (RequestId.request_id == request_id)
    )


async def claim(user_id: int, method: str, request_id: str) -> bytes | None:
    """Inside a transaction: the answer the id already has (of the last day), or None once
    the id is this transaction's to answer (`record`)."""
    now = utcnow()
    row = {"user": user_id, "method": method, "request_id": request_id, "created_at": now}
    await database.aexecute(RequestId.insert(row).on_conflict_ignore())
    query = RequestId.select(RequestId.answer, RequestId.created_at).where(
        _key(user_id, method, request_id)
    )
    answer, created_at = (await database.list(query.tuples()))[0]
    if answer is None:
        return None  # claimed just now
    created = as_datetime(created_at)
    if created is not None and created < now - KEPT:
        await database.aexecute(
            RequestId.update(answer=None, created_at=now).where(_key(user_id, method, request_id))
        )
        return None
    return bytes(answer)


async def record(user_id: int, method: str, request_id: str, answer: bytes) -> None:
    """Inside the transaction that claimed the id: its answer."""
    await database.aexecute(
        RequestId.update(answer=answer).where(_key(user_id, method, request_id))
    )


async def sweep() -> int:
    """Forget the ids older than a day, in bounded steps; how many."""
    before = RequestId.created_at.db_value(utcnow() - KEPT)
    return await delete_older("request_id", "user_id, method, request_id", "created_at", before)
