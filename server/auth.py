"""Authentication and authorization of every call.

`authorize_call` runs before each handler: it reads the bearer token, finds the RPC's
rule in `permissions.RULES`, and checks the caller's organization or project role.
Handlers read the outcome with `current()`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message

from corrigo.server.errors import NotFound, PermissionDenied, Unauthenticated
from corrigo.server.permissions import (
    ORG_ROLE_PERMISSIONS,
    PROJECT_ROLE_PERMISSIONS,
    RULES,
    Permission,
    Rule,
    Scope,
)
from corrigo.server.store import identity, projects
from corrigo.server.store.identity import Principal
from corrigo.server.store.projects import Project
from corrigo.server.validation import MAX_ID, Violations
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

    @property
    def is_org_admin(self) -> bool:
        return Permission.ORG_ADMIN in ORG_ROLE_PERMISSIONS[self.principal.role]


_current: contextvars.ContextVar[Call] = contextvars.ContextVar("corrigo_call")


def current() -> Call:
    return _current.get()


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


async def permissions_in(principal: Principal, project_id: int | None) -> frozenset[Permission]:
    granted = ORG_ROLE_PERMISSIONS[principal.role]
    if project_id is not None:
        role = await projects.role_in(project_id, principal.user_id)
        if role is not None:
            granted = granted | PROJECT_ROLE_PERMISSIONS[role]
    return granted


def _denied(permission: Permission, where: str) -> PermissionDenied:
    return PermissionDenied(
        f"permission '{permission.value}' required {where}",
        metadata={"permission": permission.value},
    )


async def _find_project(call: Call, request: Message) -> Project | None:
    name = call.rule.project_field
    assert name is not None
    value = getattr(request, name)
    checks = Violations()
    if isinstance(value, int):
        checks.check(1 <= value <= MAX_ID, name, f"must be >= 1, got {value}")
        checks.raise_if_any()
        return await projects.find_by_id(call.principal.organization_id, value)
    checks.name(name, value)
    checks.raise_if_any()
    return await projects.find_by_name(call.principal.organization_id, value)


async def authorize_project(project: Project | None, reference: str) -> None:
    """Check the current RPC's permission in a project found from a resource. A caller
    without the permission is denied whether or not the project exists."""
    call = current()
    permission = call.rule.permission
    assert permission is not None
    granted = await permissions_in(call.principal, project.id if project else None)
    if permission not in granted:
        raise _denied(permission, f"in project {reference}")
    call.project = project


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
    principal = await identity.authenticate(_bearer(context))
    call = Call(method, rule, principal)
    _current.set(call)
    permission = rule.permission
    if rule.scope is Scope.ORG:
        assert permission is not None
        if permission not in ORG_ROLE_PERMISSIONS[principal.role]:
            raise _denied(permission, "in the organization")
    elif rule.scope is Scope.PROJECT and rule.project_field and isinstance(request, Message):
        project = await _find_project(call, request)
        reference = repr(getattr(request, rule.project_field))
        await authorize_project(project, reference)
    yield


def project() -> Project:
    """The project the request names; NOT_FOUND when the authorized caller named none
    that exists."""
    call = current()
    if call.project is None:
        raise NotFound("project not found")
    return call.project
