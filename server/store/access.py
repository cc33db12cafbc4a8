"""The access check of a project-scoped call in one query: the bearer token, its user,
the project the request names in the user's organization, and the user's role in it.

Every project-scoped RPC starts with these lookups; one statement instead of three
(token, project, membership) is most of what a small read RPC costs.
"""

from __future__ import annotations

from corrigo.server.store.database import Sql, as_datetime, fetch, loaded
from corrigo.server.store.identity import (
    TOKEN_COLUMNS,
    TOKEN_TABLES,
    Principal,
    parse_bearer,
    verify,
)
from corrigo.server.store.projects import Project

_COLUMNS = f"{TOKEN_COLUMNS}, p.id, p.name, p.title, p.created_at, m.role"
_MEMBERSHIP = "LEFT JOIN membership AS m ON m.project_id = p.id AND m.user_id = u.id"
_BY_NAME = Sql(
    f"SELECT {_COLUMNS} FROM {TOKEN_TABLES} LEFT JOIN project AS p "
    f"ON p.organization_id = u.organization_id AND p.name = ? {_MEMBERSHIP} WHERE t.id = ?"
)
_BY_ID = Sql(
    f"SELECT {_COLUMNS} FROM {TOKEN_TABLES} LEFT JOIN project AS p "
    f"ON p.organization_id = u.organization_id AND p.id = ? {_MEMBERSHIP} WHERE t.id = ?"
)


async def authenticate_in_project(
    token: str, project: str | int
) -> tuple[Principal, Project | None, int | None]:
    """The token's principal (UNAUTHENTICATED as `identity.authenticate`), the project of
    the principal's organization named (str) or numbered (int) `project` (None when there
    is none), and the principal's role in it (None when not a member)."""
    token_id, secret = parse_bearer(token)
    statement = _BY_ID if isinstance(project, int) else _BY_NAME
    rows = await fetch(statement, (project, token_id))
    row = rows[0] if rows else None
    principal = await verify(token_id, secret, row)
    assert row is not None
    project_id, name, title, created_at, role = row[7:12]
    if project_id is None:
        return principal, None, None
    found = loaded(
        Project,
        id=project_id,
        organization=principal.organization_id,
        name=name,
        title=title,
        created_at=as_datetime(created_at),
    )
    return principal, found, role
