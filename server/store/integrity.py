"""Integrity errors of a write, answered as what they mean to the caller.

A write declares what it relies on, `atomic(*guards)`:
- `Refers`: rows it refers to, each by the request field naming it. A foreign key that
  fails, or a row the write reads that is gone (`DoesNotExist`), means a concurrent call
  deleted one of them: once the transaction has rolled back they are looked up again,
  and the first one gone answers NOT_FOUND naming it.
- `Unique`: a unique constraint whose violation has a meaning (the resource exists:
  ALREADY_EXISTS; another call took the same number: ABORTED, retry).
- `Referenced`: the answer for a delete that a foreign key refuses (other rows still
  refer to the row).

An integrity error that no guard explains is a bug of ours: it goes on, and is answered
INTERNAL with an error id in the log.

The drivers tell the kind of constraint that failed (`Violation`): SQLite names the table
and columns of a unique constraint but not which foreign key failed; PostgreSQL names the
constraint, its table and its columns. So a unique constraint is matched by its table
and columns, and a foreign key by looking the referred rows up again, on both.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

import peewee

from corrigo.server.api.errors import CorrigoError, NotFound

log = logging.getLogger("corrigo.store")


class Kind(enum.Enum):
    UNIQUE = "unique"  # a unique index or primary key
    FOREIGN_KEY = "foreign key"  # a referred row is missing, or a deleted one still referred to
    OTHER = "other"  # NOT NULL, CHECK: the values are ours, so a bug


class Violation(peewee.IntegrityError):
    """An integrity error with what its driver says about the constraint: the table and
    columns of a unique one (both drivers), the constraint's name (PostgreSQL)."""

    def __init__(
        self,
        kind: Kind,
        *args: Any,
        table: str | None = None,
        columns: Sequence[str] = (),
        constraint: str | None = None,
    ) -> None:
        super().__init__(*args)
        self.kind = kind
        self.table = table
        self.columns = tuple(columns)
        self.constraint = constraint


# SQLite's message for a unique index or primary key: "UNIQUE constraint failed: t.a, t.b".
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")
# PostgreSQL's detail of a unique or foreign-key violation: "Key (a, b)=(1, x) ...".
_POSTGRES_KEY = re.compile(r"Key \(([^)]*)\)=")


def sqlite_unique(message: str) -> tuple[str | None, tuple[str, ...]]:
    """(table, columns) of SQLite's unique-violation message (None, () when it names an
    index instead)."""
    match = _SQLITE_UNIQUE.match(message)
    if match is None or "." not in match.group(1):
        return None, ()
    qualified = [name.strip().split(".", 1) for name in match.group(1).split(",")]
    return qualified[0][0], tuple(column for _, column in qualified)


def postgres_columns(detail: str | None) -> tuple[str, ...]:
    """The key columns PostgreSQL's detail of a violation names."""
    match = _POSTGRES_KEY.match(detail or "")
    if match is None:
        return ()
    return tuple(column.strip().strip('"') for column in match.group(1).split(","))


@dataclass(frozen=True)
class Refers:
    """The write refers to the rows of `model` whose primary keys are `keys` (rows the
    model says are `present()`), named by the request's `field` (and called `noun` in
    answers). Answers show a key as the request gives it: `keys` maps each to that name
    when the request names rows otherwise (a uid); keys that are internal ids,
    `shown=False`, are not shown."""

    field: str
    noun: str
    model: Any
    keys: Collection[Any] | Mapping[Any, str]
    shown: bool = True

    def name(self, key: Any) -> str:
        """How the request names the row of `key` ("" when it is not shown)."""
        if isinstance(self.keys, Mapping):
            return str(self.keys[key])
        return str(key) if self.shown else ""

    async def missing(self) -> Any | None:
        """The first of `keys` that is no longer there, or None."""
        wanted = list(dict.fromkeys(self.keys))
        if not wanted:
            return None
        key = self.model._meta.primary_key
        # The model's own database (the store's), so this module needs no import of it.
        found = await self.model._meta.database.list(
            self.model.select(key).where(key.in_(wanted), *self.model.present()).tuples()
        )
        present = {row[0] for row in found}
        return next((k for k in wanted if k not in present), None)


@dataclass(frozen=True)
class Unique:
    """A unique constraint of `model` over `fields` whose violation answers `error`."""

    model: Any
    fields: Sequence[Any]
    error: CorrigoError

    def matches(self, violation: Violation) -> bool:
        table = self.model._meta.table_name
        columns = [field.column_name for field in self.fields]
        if violation.columns:
            return violation.table == table and set(violation.columns) == set(columns)
        # PostgreSQL leaves the key out of its detail for a caller who may not read the
        # table: then the constraint's name, as Peewee names a unique index, tells.
        return violation.constraint == "_".join([table, *columns])


@dataclass(frozen=True)
class Referenced:
    """A delete refused by a foreign key (rows still refer to the row) answers `error`."""

    error: CorrigoError


Guard: TypeAlias = Refers | Unique | Referenced


def written(count: int, model: Any) -> None:
    """Check `count`, the rows a write by primary key changed: none means the row is
    gone, and `model`'s DoesNotExist raised then is answered by the write's guards."""
    if not count:
        raise model.DoesNotExist(f"no {model._meta.table_name} row to write")


async def explained(error: Exception, guards: Sequence[Guard]) -> CorrigoError | None:
    """What `error`, raised by a write declaring `guards`, answers; None when no guard
    explains it."""
    if isinstance(error, Violation) and error.kind is Kind.UNIQUE:
        return next((g.error for g in guards if isinstance(g, Unique) and g.matches(error)), None)
    foreign_key = isinstance(error, Violation) and error.kind is Kind.FOREIGN_KEY
    if not foreign_key and not isinstance(error, peewee.DoesNotExist):
        return None
    for guard in guards:
        if isinstance(guard, Refers):
            key = await guard.missing()
            if key is not None:
                name = guard.name(key)
                what = f"{guard.noun} {name}" if name else guard.noun
                return NotFound(
                    f"{what} not found ({guard.field})",
                    metadata={"field": guard.field, "resource": guard.noun, "name": name},
                )
    if foreign_key:
        return next((g.error for g in guards if isinstance(g, Referenced)), None)
    return None


@contextlib.asynccontextmanager
async def guarded(
    guards: Sequence[Guard], block: AbstractAsyncContextManager[Any]
) -> AsyncIterator[Any]:
    """`block` (a transaction), its integrity errors answered as `guards` declare, once it
    has rolled back (so the rows it refers to can be looked up again)."""
    try:
        async with block as value:
            yield value
    except (peewee.IntegrityError, peewee.DoesNotExist) as error:
        answer = await explained(error, guards)
        if answer is None:
            raise
        log.info("a write met %r: answered %s", error, answer.code.name)
        raise answer from None
