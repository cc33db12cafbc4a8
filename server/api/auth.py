"""Authentication and authorization of every call.

`authorize_call` runs before each handler: it reads the bearer token, finds the RPC's
rule in `permissions.RULES`, and checks the caller's organization or project role (in the
project the request names, or the one the rule's lookup finds). Handlers read the outcome
with `current()`, `project()` and `found()`.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from corrigo.server.api.errors import Internal, NotFound, PermissionDenied, Unauthenticated
from corrigo.server.api.permissions import (
    ORG_ROLE_PERMISSIONS,
    PROJECT_ROLE_PERMISSIONS,
    RULES,
    Lookup,
    Permission,
    Rule,
    Scope,
)
from corrigo.server.api.validation import Violations
from corrigo.server.store import access, identity, projects
from corrigo.server.store.identity import Principal
from corrigo.server.store.projects import Project
from corrigo.v1 import errors_pb2

log = logging.getLogger("corrigo.auth")


@dataclass
class Call:
    """The authorized caller of the current RPC."""

    method: str
    rule: Rule
    principal: Principal
    # The project named by the request, once the rule's project check passed.
    project: Project | None = field(default=None)
    # The rows of the RPC's companion read (`read_with_access`), once authorized.
    companion_rows: list[Sequence[Any]] = field(default_factory=list)
    # Whether a PROJECT rule's permission was checked (or declared not to apply): a call
    # whose lookup leaves it unchecked is answered INTERNAL before its handler runs.
    project_checked: bool = False
    # What the rule's lookup found (such as the practice session), for the handler.
    found: Any = None

    @property
    def is_org_admin(self) -> bool:
        return Permission.ORG_ADMIN in ORG_ROLE_PERMISSIONS[self.principal.role]


_current: contextvars.ContextVar[Call] = contextvars.ContextVar("corrigo_call")

# RPC -> its companion read and the request's values for the companion's parameters.
_companions: dict[str, tuple[access.Companion, Callable[[Any], Sequence[Any]]]] = {}


def read_with_access(
    method: str, companion: access.Companion, params: Callable[[Any], Sequence[Any]]
) -> None:
    """Have `method`'s access check also read `companion` (with `params(request)`), in
    the same statement: for a project-scoped RPC whose whole read is one resource of the
    project. The handler takes the rows from `companion_rows()`."""
    _companions[method] = (companion, params)


def companion_rows() -> list[Sequence[Any]]:
    """The current RPC's companion rows (see `read_with_access`)."""
    return current().companion_rows


# Lookup -> the function that finds the request's project and checks the permission there
# (with `authorize_project`, or `touches_no_project`); it may keep what it found in `found`.
_lookups: dict[Lookup, Callable[[Any], Awaitable[None]]] = {}


def register_lookup(lookup: Lookup, find: Callable[[Any], Awaitable[None]]) -> None:
    _lookups[lookup] = find


def registered_lookups() -> frozenset[Lookup]:
    return frozenset(_lookups)


def current() -> Call:
    return _current.get()


def found() -> Any:
    """What the current call's lookup found (see `permissions.Lookup`)."""
    return current().found


def current_or_none() -> Call | None:
    return _current.get(None)


def _bearer(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    "malformed authorization metadata: expected 'Bearer <token>'",
                    reason=errors_pb2.TOKEN_MALFORMED,
                )
            return token.strip()
    raise Unauthenticated(
        "missing bearer token: send metadata 'authorization: Bearer <token>'",
        reason=errors_pb2.TOKEN_MISSING,
    )


def _granted(principal: Principal, role: int | None) -> frozenset[Permission]:
    """The organization role's permissions, plus the project role's (`role`) if any."""
    granted = ORG_ROLE_PERMISSIONS[principal.role]
    if role is not None:
        granted = granted | PROJECT_ROLE_PERMISSIONS[role]
    return granted


async def permissions_in(principal: Principal, project_id: int | None) -> frozenset[Permission]:
    role = None
    if project_id is not None:
        role = await projects.role_in(project_id, principal.user_id)
    return _granted(principal, role)


def _denied(permission: Permission, where: str) -> PermissionDenied:
    return PermissionDenied(
        f"permission '{permission.value}' required {where}",
        metadata={"permission": permission.value},
    )


def _project_checks(field: str, value: str | int) -> Violations:
    """The problems of the request's project field (a name, or an id)."""
    checks = Violations()
    if isinstance(value, int):
        checks.stored_id(field, value)
    else:
        checks.name(field, value)
    return checks


def _admit(call: Call, project: Project | None, granted: frozenset[Permission], where: str) -> None:
    permission = call.rule.permission
    assert permission is not None
    if permission not in granted:
        raise _denied(permission, f"in project {where}")
    call.project = project
    call.project_checked = True


async def authorize_project(project: Project | None, reference: str) -> None:
    """Check the current RPC's permission in a project found from a resource. A caller
    without the permission is denied whether or not the project exists."""
    call = current()
    granted = await permissions_in(call.principal, project.id if project else None)
    _admit(call, project, granted, reference)


def touches_no_project() -> None:
    """Declare that the current call reads or writes nothing of any project (an
    organization-wide item every user may read, the caller's own session outside projects,
    an empty stream), so its PROJECT rule's permission does not apply."""
    current().project_checked = True


def _unchecked_project(method: str) -> Internal:
    error_id = uuid.uuid4().hex[:12]
    log.error(
        "bug: %s's rule found no project to check its permission in (error id %s)",
        method,
        error_id,
    )
    return Internal.logged_as(error_id)


async def _locate(call: Call, request: Message | None) -> None:
    """Check a PROJECT rule's permission where its lookup finds the project. An empty
    client stream reads and writes nothing; a request that does not parse is answered
    INVALID_ARGUMENT by the decode guard before the handler runs."""
    if not isinstance(request, Message):
        call.project_checked = True
        return
    find = _lookups.get(call.rule.lookup) if call.rule.lookup else None
    if find is None:
        raise _unchecked_project(call.method)
    await find(request)
    if not call.project_checked:
        raise _unchecked_project(call.method)


@asynccontextmanager
async def authorize_call(
    method: str, context: grpc.aio.ServicerContext, request: Message | None
) -> AsyncIterator[None]:
    rule = RULES.get(method)
    if rule is None:
        log.error("no permission rule for %s: refusing the call", method)
        raise PermissionDenied(f"{method} is not open to any role")
    if rule.scope is Scope.PUBLIC:
        yield
        return
    token = _bearer(context)
    checks = Violations()
    field = (
        rule.project_field if rule.scope is Scope.PROJECT and isinstance(request, Message) else None
    )
    if field is not None:
        value = getattr(request, field)
        checks = _project_checks(field, value)
        if not checks.items:
            # The token, the project and the caller's role in it (and the companion
            # read, if any), in one query.
            companion, params = _companions.get(method, (None, None))
            found = await access.authenticate_in_project(
                token, value, companion, params(request) if params else ()
            )
            call = Call(method, rule, found.principal)
            _current.set(call)
            _admit(call, found.project, _granted(found.principal, found.role), repr(value))
            call.companion_rows = found.companion_rows
            yield
            return
    principal = await identity.authenticate(token)
    call = Call(method, rule, principal)
    _current.set(call)
    permission = rule.permission
    if rule.scope is Scope.ORG:
        assert permission is not None
        if permission not in ORG_ROLE_PERMISSIONS[principal.role]:
            raise _denied(permission, "in the organization")
    checks.raise_if_any()
    if rule.scope is Scope.PROJECT:
        await _locate(call, request)
    yield


def project() -> Project:
    """The project the request names; NOT_FOUND when the authorized caller named none
    that exists."""
    call = current()
    if call.project is None:
        raise NotFound("project not found")
    return call.project
