"""Generated bad input for every RPC: never INTERNAL or UNKNOWN, never a hang, and
INVALID_ARGUMENT always names the field.

Requests are built from the message descriptors (hypothesis). The count per RPC scales
with RELIABILITY_SCALE (`make reliability` raises it)."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corrigo.client import CorrigoError
from corrigo.server.app import SERVICES
from tests import dataset_helpers
from tests.conftest import Org
from tests.reliability import generate, report

METHODS = [method for entry in SERVICES for method in entry.descriptor.methods]
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
CALL_TIMEOUT = 20


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _call(
    channel: grpc.Channel, method: MethodDescriptor, requests: list[Message], token: str
) -> None:
    """One call with the generated request(s); reads at most three streamed answers."""
    response = GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": response.FromString,
    }
    metadata = (("authorization", f"Bearer {token}"),)
    if method.client_streaming and method.server_streaming:
        stream = channel.stream_stream(_path(method), **kwargs)(
            iter(requests), metadata=metadata, timeout=CALL_TIMEOUT
        )
        list(itertools.islice(stream, 3))
        stream.cancel()
    elif method.client_streaming:
        channel.stream_unary(_path(method), **kwargs)(
            iter(requests), metadata=metadata, timeout=CALL_TIMEOUT
        )
    elif method.server_streaming:
        stream = channel.unary_stream(_path(method), **kwargs)(
            requests[0], metadata=metadata, timeout=CALL_TIMEOUT
        )
        list(itertools.islice(stream, 3))
        stream.cancel()
    else:
        channel.unary_unary(_path(method), **kwargs)(
            requests[0], metadata=metadata, timeout=CALL_TIMEOUT
        )


def _check(error: grpc.RpcError, codes: collections.Counter[str]) -> None:
    decoded = CorrigoError.from_rpc_error(error)
    codes[decoded.code.name] += 1
    if decoded.code == grpc.StatusCode.CANCELLED:
        return  # our own cancel after reading three answers
    assert decoded.code not in FORBIDDEN, f"{decoded.code.name}: {decoded.message}"
    if decoded.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert decoded.field_violations, f"INVALID_ARGUMENT without a field: {decoded.message}"
        assert all(field for field, _ in decoded.field_violations)


@pytest.fixture
async def world(org: Org) -> dict[str, Any]:
    """Real names and ids for the generator to mix in, so requests get past lookups."""
    project = await org.project("fuzz")
    source = await dataset_helpers.source(org.admin, project.name, "inbox")
    await dataset_helpers.dataset(org.admin, project.name, [source.id], "ds")
    await dataset_helpers.sync(
        org.admin,
        project.name,
        "inbox",
        [dataset_helpers.comment("c1"), dataset_helpers.comment("c2")],
    )
    return {
        "owner": project.name,
        "name": "ds",
        "dataset": "ds",
        "source": "inbox",
        "project_id": project.id,
        "comment_uid": f"{source.id}.c1",
    }


def _overrides(world: dict[str, Any]) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "owner": st.one_of(st.just(world["owner"]), generate.TEXT),
        "name": st.one_of(st.sampled_from([world["name"], world["source"]]), generate.TEXT),
        "dataset": st.one_of(st.just(world["dataset"]), generate.TEXT),
        "project_id": st.one_of(st.just(world["project_id"]), generate.INT32),
        "comment_uid": st.one_of(st.just(world["comment_uid"]), generate.TEXT),
    }


@pytest.mark.parametrize("method", METHODS, ids=_path)
async def test_generated_requests_never_fail_badly(
    org: Org, world: dict[str, Any], backend: str, method: MethodDescriptor
) -> None:
    examples = max(5, int(15 * report.scale()))
    codes: collections.Counter[str] = collections.Counter()
    request = generate.message(method.input_type, _overrides(world))
    requests = (
        st.lists(request, min_size=1, max_size=3)
        if method.client_streaming
        else request.map(lambda r: [r])
    )
    target = org.running.target

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def run(batch: list[Message]) -> None:
        with grpc.insecure_channel(target) as channel:
            try:
                _call(channel, method, batch, org.admin_token)
                codes["OK"] += 1
            except grpc.RpcError as error:
                _check(error, codes)

    await asyncio.to_thread(run)
    tried = sum(codes.values())
    report.record_per_rpc("bad input", backend, _path(method), tried)
    report.record("bad input", backend, invalid_argument=codes["INVALID_ARGUMENT"])
    # Hypothesis stops early when a request has few distinct values (WhoAmI has none).
    assert tried >= (examples if method.input_type.fields else 1)


def _undecodable(method: MethodDescriptor) -> Iterator[bytes]:
    """A corrupt message, and one whose first string field holds invalid UTF-8."""
    yield b"\xff\xff\xff\xff"
    for field in method.input_type.fields:
        if field.type == field.TYPE_STRING and not field.is_repeated:
            tag = (field.number << 3) | 2
            yield bytes([tag]) + b"\x03\xff\xfe\xfd" if tag < 128 else b""
            return


@pytest.mark.parametrize("method", METHODS, ids=_path)
async def test_undecodable_requests_are_invalid_argument(
    org: Org, method: MethodDescriptor
) -> None:
    target = org.running.target

    def run() -> list[CorrigoError]:
        errors = []
        with grpc.insecure_channel(target) as channel:
            for payload in _undecodable(method):
                if not payload:
                    continue
                raw = {"request_serializer": None, "response_deserializer": None}
                metadata = (("authorization", f"Bearer {org.admin_token}"),)
                try:
                    if method.client_streaming and method.server_streaming:
                        list(
                            channel.stream_stream(_path(method), **raw)(
                                iter([payload]), metadata=metadata, timeout=CALL_TIMEOUT
                            )
                        )
                    elif method.client_streaming:
                        channel.stream_unary(_path(method), **raw)(
                            iter([payload]), metadata=metadata, timeout=CALL_TIMEOUT
                        )
                    elif method.server_streaming:
                        list(
                            channel.unary_stream(_path(method), **raw)(
                                payload, metadata=metadata, timeout=CALL_TIMEOUT
                            )
                        )
                    else:
                        channel.unary_unary(_path(method), **raw)(
                            payload, metadata=metadata, timeout=CALL_TIMEOUT
                        )
                except grpc.RpcError as error:
                    errors.append(CorrigoError.from_rpc_error(error))
                else:
                    raise AssertionError(f"{_path(method)} accepted an undecodable request")
        return errors

    for error in await asyncio.to_thread(run):
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (error.code, error.message)
        assert error.fields == ["request"]
        assert "not a valid message" in error.message
