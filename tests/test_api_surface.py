"""What every RPC of the API declares, read from the generated descriptors: a REST route
(or a place on the gRPC-only list), how clients retry it, and a request id on creates."""

from __future__ import annotations

import re

from google.api import annotations_pb2
from google.protobuf.descriptor import FieldDescriptor

from corrigo.client import api
from corrigo.server.app import SERVICES
from corrigo.v1 import options_pb2

# RPCs the REST gateway does not serve, each with its reason. None today: every RPC has a
# `google.api.http` route (a streaming one is served as NDJSON).
GRPC_ONLY: dict[str, str] = {}

# Creates (Create*/Record*) that take no request id, each with its reason.
CREATES_WITHOUT_REQUEST_ID = {
    # Its answer holds the token's secret, which the server never stores.
    "corrigo.v1.AdminService.CreateApiToken": options_pb2.RETRY_NEVER,
    # Labels already there are left as they are: a second run changes nothing.
    "corrigo.v1.DatasetService.CreateLabelDefs": options_pb2.RETRY_IDEMPOTENT,
}


def _retry(name: str) -> int:
    (method,) = [m for m in api.methods() if m.full_name == name]
    retry: int = method.GetOptions().Extensions[options_pb2.retry]
    return retry


def test_methods_are_every_rpc_the_server_serves() -> None:
    served = {m.full_name for entry in SERVICES for m in entry.descriptor.methods}
    assert {m.full_name for m in api.methods()} == served


def test_every_rpc_has_a_rest_route_or_is_listed_grpc_only() -> None:
    routed = {
        m.full_name for m in api.methods() if m.GetOptions().HasExtension(annotations_pb2.http)
    }
    names = {m.full_name for m in api.methods()}
    assert names - routed == GRPC_ONLY.keys()
    assert all(GRPC_ONLY.values()), "each gRPC-only RPC says why"


def test_every_rpc_declares_how_it_is_retried() -> None:
    undeclared = [m.full_name for m in api.methods() if not _retry(m.full_name)]
    assert undeclared == []


def test_creates_take_a_request_id_unless_listed() -> None:
    creates = {m.full_name for m in api.methods() if re.match(r"(Create|Record)[A-Z]", m.name)}
    by_request_id = {
        m.full_name for m in api.methods() if _retry(m.full_name) == options_pb2.RETRY_REQUEST_ID
    }
    assert creates - by_request_id == CREATES_WITHOUT_REQUEST_ID.keys()
    for name, retry in CREATES_WITHOUT_REQUEST_ID.items():
        assert _retry(name) == retry, name
    for method in api.methods():
        field = method.input_type.fields_by_name.get("request_id")
        if method.full_name in by_request_id:
            assert field is not None, method.full_name
            assert field.type == FieldDescriptor.TYPE_STRING, method.full_name
        else:
            assert field is None, f"{method.full_name} has a request_id it does not honour"
