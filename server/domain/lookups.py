"""The resources a request names, found in the project the caller was authorized in
(a resource of another project is NOT_FOUND, as one that does not exist)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from corrigo.server.api import auth
from corrigo.server.api.errors import NotFound
from corrigo.server.api.validation import Violations
from corrigo.server.store import datasets

T = TypeVar("T")


async def by_id(
    field: str, value: int, what: str, find: Callable[[int, int], Awaitable[T | None]]
) -> T:
    """`find(project id, value)` for the request's id `field`: INVALID_ARGUMENT for an id no
    row can have, NOT_FOUND (naming `what`) when the project has none."""
    checks = Violations()
    checks.stored_id(field, value)
    checks.raise_if_any()
    found = await find(auth.project().id, value)
    if found is None:
        raise NotFound(f"{what} {value} not found")
    return found


async def named_dataset(name: str, field: str = "name") -> datasets.Dataset:
    """The request's dataset: INVALID_ARGUMENT on `field` for a malformed name, NOT_FOUND
    when there is none of that name."""
    checks = Violations()
    checks.name(field, name)
    checks.raise_if_any()
    return await datasets.find(auth.project(), name)
