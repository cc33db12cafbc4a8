"""Few-shot examples: owned by one user, linked from agents and session settings."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import peewee

from corrigo.server.store.database import BaseModel, atomic, database, retried, utcnow
from corrigo.server.store.fields import JSONField
from corrigo.server.store.identity import User
from corrigo.server.store.integrity import Refers, written


class FewShotExample(BaseModel):
    id = peewee.AutoField()
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    input_text = peewee.TextField()
    output_text = peewee.TextField()
    is_active = peewee.BooleanField(default=True)
    title = peewee.CharField(max_length=200, null=True)
    meta = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


async def create(user_id: int, values: dict[str, Any]) -> FewShotExample:
    now = utcnow()
    return await FewShotExample.acreate(user=user_id, created_at=now, updated_at=now, **values)


async def get_owned(user_id: int, example_id: int) -> FewShotExample | None:
    return await FewShotExample.aget_or_none(
        FewShotExample.id == example_id, FewShotExample.user == user_id
    )


async def list_owned(user_id: int, after_id: int, limit: int) -> list[FewShotExample]:
    query = (
        FewShotExample.select()
        .where(FewShotExample.user == user_id, FewShotExample.id > after_id)
        .order_by(FewShotExample.id)
        .limit(limit)
    )
    return await database.list(query)


async def owned_ids(user_id: int, example_ids: Collection[int]) -> set[int]:
    """Which of `example_ids` belong to the user."""
    if not example_ids:
        return set()
    query = (
        FewShotExample.select(FewShotExample.id)
        .where(FewShotExample.user == user_id, FewShotExample.id.in_(list(example_ids)))
        .tuples()
    )
    return {row[0] for row in await database.list(query)}


async def update(example: FewShotExample, values: dict[str, Any]) -> FewShotExample:
    values["updated_at"] = utcnow()
    async with atomic(Refers("example_id", "few-shot example", FewShotExample, [example.id])):
        written(
            await database.aexecute(
                FewShotExample.update(**values).where(FewShotExample.id == example.id)
            ),
            FewShotExample,
        )
    for name, value in values.items():
        setattr(example, name, value)
    return example


async def delete(example_id: int) -> None:
    """The example; its links from agents and settings go by cascade (again when that
    deadlocked with an agent's update replacing its links)."""
    await retried(
        lambda: database.aexecute(FewShotExample.delete().where(FewShotExample.id == example_id))
    )
