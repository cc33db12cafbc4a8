"""Every RPC x {no token, malformed, unknown, revoked, other organization, each role},
generated from the permission table: a new RPC cannot be forgotten, because an RPC
missing from the table fails here."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from corrigo.client import CorrigoError
from corrigo.server.api.permissions import (
    ORG_ROLE_PERMISSIONS,
    PROJECT_ROLE_PERMISSIONS,
    RULES,
    Permission,
    Rule,
    Scope,
)
from corrigo.server.app import SERVICES
from corrigo.v1 import admin_pb2
from corrigo.v1.admin_pb2 import Member, User
from tests import dataset_helpers
from tests.conftest import Org
from tests.reliability import report

METHODS = [method for entry in SERVICES for method in entry.descriptor.methods]
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAUTHENTICATED}


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class Caller:
    name: str
    token: str
    org_role: int
    project_role: int | None  # in the world project
    same_org: bool = True


def _request(method: MethodDescriptor, project: admin_pb2.Project) -> Message:
    """An otherwise empty request naming the world project where the request can."""
    request = GetMessageClass(method.input_type)()
    fields = method.input_type.fields_by_name
    if "owner" in fields and fields["owner"].type == fields["owner"].TYPE_STRING:
        request.owner = project.name  # type: ignore[attr-defined]
    if "project_id" in fields and fields["project_id"].type == fields["project_id"].TYPE_INT32:
        request.project_id = project.id  # type: ignore[attr-defined]
    return request


def _call(
    target: str, method: MethodDescriptor, request: Message, token: str | None
) -> grpc.StatusCode:
    codec: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": GetMessageClass(method.output_type).FromString,
    }
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    path = _path(method)
    with grpc.insecure_channel(target) as channel:
        try:
            if method.client_streaming and method.server_streaming:
                call = channel.stream_stream(path, **codec)(
                    iter([request]), metadata=metadata, timeout=20
                )
                list(itertools.islice(call, 1))
            elif method.client_streaming:
                channel.stream_unary(path, **codec)(iter([request]), metadata=metadata, timeout=20)
            elif method.server_streaming:
                call = channel.unary_stream(path, **codec)(request, metadata=metadata, timeout=20)
                list(itertools.islice(call, 1))
            else:
                channel.unary_unary(path, **codec)(request, metadata=metadata, timeout=20)
        except grpc.RpcError as error:
            return CorrigoError.from_rpc_error(error).code
    return grpc.StatusCode.OK


def _granted(caller: Caller) -> frozenset[Permission]:
    granted = ORG_ROLE_PERMISSIONS[caller.org_role]
    if caller.project_role is not None:
        granted = granted | PROJECT_ROLE_PERMISSIONS[caller.project_role]
    return granted


def _denied(rule: Rule, caller: Caller) -> bool | None:
    """Whether the interceptor must refuse the caller; None where the handler decides
    (the project is found from a resource, or any user may call)."""
    if rule.scope is Scope.ORG:
        return rule.permission not in ORG_ROLE_PERMISSIONS[caller.org_role]
    if rule.scope is Scope.PROJECT and rule.project_field:
        if not caller.same_org:
            # The project is not in the caller's organization: invisible, and only an
            # organization admin (who may act anywhere in theirs) gets past the check.
            return rule.permission not in ORG_ROLE_PERMISSIONS[caller.org_role]
        return rule.permission not in _granted(caller)
    return None


async def test_every_rpc_answers_every_caller_as_the_table_says(
    org: Org, other_org: Org, backend: str
) -> None:
    project = await org.project("matrix")
    source = await dataset_helpers.source(org.admin, project.name, "inbox")
    await dataset_helpers.dataset(org.admin, project.name, [source.id], "ds")
    callers = [Caller("org admin", org.admin_token, User.ADMIN, None)]
    for role in (User.MEMBER, User.SERVICE):
        _, client = await org.user(role)
        callers.append(Caller(User.Role.Name(role), client.token or "", role, None))
    for role in (Member.VIEWER, Member.ANNOTATOR, Member.EDITOR, Member.ADMIN):
        _, client = await org.member(project.id, role)
        callers.append(Caller(Member.Role.Name(role), client.token or "", User.MEMBER, role))
    callers.append(Caller("other org admin", other_org.admin_token, User.ADMIN, None, False))
    _, stranger = await other_org.user()
    callers.append(Caller("other org member", stranger.token or "", User.MEMBER, None, False))
    _, revoked_client = await org.user()
    whoami = await revoked_client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    await org.admin.admin.RevokeApiToken(admin_pb2.RevokeApiTokenRequest(token_id=whoami.token_id))
    bad_tokens = {
        "no token": None,
        "malformed": "not-a-token",
        "unknown": "crg_999999999_secret",
        "revoked": revoked_client.token,
    }
    target = org.running.target

    def run() -> tuple[int, list[str]]:
        calls, wrong = 0, []
        for method in METHODS:
            rule = RULES.get(_path(method))
            if rule is None:
                wrong.append(f"{_path(method)}: no rule in permissions.RULES")
                continue
            request = _request(method, project)
            for label, token in bad_tokens.items():
                code = _call(target, method, request, token)
                calls += 1
                if code != grpc.StatusCode.UNAUTHENTICATED:
                    wrong.append(f"{_path(method)} {label}: {code.name}")
            for caller in callers:
                code = _call(target, method, request, caller.token)
                calls += 1
                denied = _denied(rule, caller)
                if code in NEVER:
                    wrong.append(f"{_path(method)} {caller.name}: {code.name}")
                elif denied is True and code != grpc.StatusCode.PERMISSION_DENIED:
                    wrong.append(f"{_path(method)} {caller.name}: {code.name}, expected denial")
                elif denied is False and code == grpc.StatusCode.PERMISSION_DENIED:
                    wrong.append(f"{_path(method)} {caller.name}: denied, expected allowed")
        return calls, wrong

    calls, wrong = await asyncio.to_thread(run)
    report.record("auth matrix", backend, calls=calls)
    assert wrong == []
