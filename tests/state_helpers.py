"""The whole database as a value, to tell whether a call changed anything."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import peewee

from corrigo.server.store.database import BaseModel, database
from corrigo.server.store.purge import Kind, Purge
from corrigo.server.store.request_ids import RequestId

# Time columns and generated keys.
_UNCOMPARED = (peewee.DateTimeField, peewee.AutoField)
# Change positions (`store.positions`): like a time, when the write that stored a row ran.
_POSITION = "change_tx"


def _models(base: type[BaseModel]) -> list[type[BaseModel]]:
    found = []
    for model in base.__subclasses__():
        found.append(model)
        found.extend(_models(model))
    return found


async def purges_done(*where: Any) -> None:
    """Wait (at most a minute) until no purge (meeting `where`) is left."""
    left = Purge.select().where(*where) if where else Purge.select()
    deadline = time.monotonic() + 60
    while await database.count(left):
        assert time.monotonic() < deadline, "a purge did not finish"
        await asyncio.sleep(0.05)


async def state() -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (sorted), but the request ids, without time columns and change
    positions (a background task notes tokens' last use, and a write that changes nothing
    may still stamp when it ran) nor generated keys (a link row written again gets a new
    one, which nothing shows), once no deleted source or dataset waits for its purge (background
    work; a deleted label's pruning waits minutes before it starts, see `retired_labels`)."""
    await purges_done(Purge.kind != Kind.LABEL.value)
    tables = {}
    for model in _models(BaseModel):
        if model is RequestId:
            continue
        kept = [
            f
            for f in model._meta.sorted_fields
            if not isinstance(f, _UNCOMPARED) and f.name != _POSITION
        ]
        rows = await database.list(model.select(*kept).tuples())
        tables[model._meta.table_name] = sorted(rows, key=repr)
    return tables
