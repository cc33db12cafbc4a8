"""The access check of a project-scoped call in one query: the bearer token, its user,
the project the request names in the user's organization, and the user's role in it.

Every project-scoped RPC starts with these lookups; one statement instead of three
(token, project, membership) is most of what a small read RPC costs. An RPC whose
whole read is one resource of that project can have it read in the same statement
(`Companion`): one round trip to the database for the call. That is the one place where
the access check carries another resource's SQL, kept for a measured need: on
PostgreSQL a statement costs about 120 us of the 1 ms a GetDataset takes, and a second
one would put GetDataset below 0.6 of a Health/Check (`make bench`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corrigo.server.store.database import Sql, as_datetime, fetch
from corrigo.server.store.identity import (
    TOKEN_COLUMNS,
    TOKEN_TABLES,
    Principal,
    parse_bearer,
    verify,
)
from corrigo.server.store.projects import Project

_COLUMNS = f"{TOKEN_COLUMNS}, p.id, p.name, p.title, p.created_at, m.role"
# Where the project's columns start in a row, and where the companion's start.
_PROJECT_AT = len(TOKEN_COLUMNS.split(","))
_COMPANION_AT = len(_COLUMNS.split(","))
_MEMBERSHIP = "LEFT JOIN membership AS m ON m.project_id = p.id AND m.user_id = u.id"


@dataclass(frozen=True)
class Companion:
    """A read of the named project's resource made in the access check's statement:
    `columns` of the LEFT JOINs `joins` on the project `p` (their `?` parameters are the
    companion's), its rows in `order`. The rows reach the handler only once the call is
    authorized (`auth.companion_rows`)."""

    columns: str
    joins: str
    order: str = ""


@functools.cache
def _statement(by_id: bool, companion: Companion | None) -> Sql:
    project = "p.id = ?" if by_id else "p.name = ?"
    columns, joins, order = _COLUMNS, _MEMBERSHIP, ""
    if companion is not None:
        columns = f"{columns}, {companion.columns}"
        joins = f"{joins} {companion.joins}"
        order = f" ORDER BY {companion.order}" if companion.order else ""
    return Sql(
        f"SELECT {columns} FROM {TOKEN_TABLES} LEFT JOIN project AS p "
        f"ON p.organization_id = u.organization_id AND {project} {joins} WHERE t.id = ?{order}",
        # By keys: a token, its project, and the companion's rows of that project's resource.
        bounded=True,
    )


@dataclass(frozen=True)
class Access:
    principal: Principal
    # The project named, None when the principal's organization has none such.
    project: Project | None
    # The principal's role in it, None when not a member.
    role: int | None
    # The companion's columns, a row each (none without a companion).
    companion_rows: list[Sequence[Any]]


async def authenticate_in_project(
    token: str,
    project: str | int,
    companion: Companion | None = None,
    companion_params: Sequence[Any] = (),
) -> Access:
    """The token's principal (UNAUTHENTICATED as `identity.authenticate`), the project of
    the principal's organization named (str) or numbered (int) `project`, the principal's
    role in it, and the companion's rows, if one is given."""
    token_id, secret = parse_bearer(token)
    statement = _statement(isinstance(project, int), companion)
    rows = await fetch(statement, (project, *companion_params, token_id))
    row = rows[0] if rows else None
    principal = await verify(token_id, secret, row)
    assert row is not None
    project_id, name, title, created_at, role = row[_PROJECT_AT:_COMPANION_AT]
    if project_id is None:
        return Access(principal, None, None, [])
    found = Project(
        id=project_id,
        organization=principal.organization_id,
        name=name,
        title=title,
        created_at=as_datetime(created_at),
    )
    companion_rows = [r[_COMPANION_AT:] for r in rows] if companion is not None else []
    return Access(principal, found, role, companion_rows)
