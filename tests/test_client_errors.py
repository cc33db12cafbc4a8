"""Every call of `Client` and `AsyncClient`, unary or streaming, in either direction,
fails with a `CorrigoError` and nothing else from grpc: each RPC of each service (from
the descriptors) is made to fail through both clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from corrigo.client import AsyncClient, Client, CorrigoError, api
from corrigo.v1 import datasets_pb2
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

METHODS = list(api.methods())
STREAMING = [m for m in METHODS if m.client_streaming or m.server_streaming]


def _stub(client: Client | AsyncClient, method: MethodDescriptor) -> Any:
    """The client's stub of the method's service (generated stubs are named SERVICEStub)."""
    wanted = f"{method.containing_service.name}Stub"
    stubs = [stub for stub in vars(client).values() if type(stub).__name__ == wanted]
    assert len(stubs) == 1, (wanted, stubs)
    return getattr(stubs[0], method.name)


def _request(method: MethodDescriptor) -> Any:
    return message_factory.GetMessageClass(method.input_type)()


def _sync_call(client: Client, method: MethodDescriptor) -> Exception:
    call = _stub(client, method)
    request = _request(method)
    try:
        if method.client_streaming:
            list(call(iter([request])))
        elif method.server_streaming:
            list(call(request))
        else:
            call(request)
    except Exception as error:  # whichever type arrives: the test checks it
        return error
    raise AssertionError(f"{method.full_name} succeeded")


async def _async_call(client: AsyncClient, method: MethodDescriptor) -> Exception:
    call = _stub(client, method)
    request = _request(method)
    try:
        if method.client_streaming:
            [_ async for _ in call(iter([request]))]
        elif method.server_streaming:
            [_ async for _ in call(request)]
        else:
            await call(request)
    except Exception as error:  # whichever type arrives: the test checks it
        return error
    raise AssertionError(f"{method.full_name} succeeded")


def _only_corrigo_errors(
    errors: dict[str, Exception], code: grpc.StatusCode | None = None
) -> Iterator[CorrigoError]:
    for name, error in errors.items():
        assert type(error) is CorrigoError, (name, type(error), error)
        assert error.message and error.reason, (name, error)
        if code is not None:
            assert error.code == code, (name, error)
        yield error


async def test_every_rpc_fails_with_a_corrigo_error_through_both_clients(org: Org) -> None:
    assert {m.containing_service.name for m in METHODS} >= {"AdminService", "DatasetService"}
    assert len(STREAMING) >= 5
    target = org.running.target

    def through_client(token: str, methods: list[MethodDescriptor]) -> dict[str, Exception]:
        with Client(target, token) as client:
            return {m.full_name: _sync_call(client, m) for m in methods}

    async def through_async_client(
        token: str, methods: list[MethodDescriptor]
    ) -> dict[str, Exception]:
        async with AsyncClient(target, token) as client:
            return {m.full_name: await _async_call(client, m) for m in methods}

    # A token the server does not know: every RPC answers UNAUTHENTICATED.
    stranger = "crg_1_nonsense"
    for errors in (
        await asyncio.to_thread(through_client, stranger, METHODS),
        await through_async_client(stranger, METHODS),
    ):
        assert len(errors) == len(METHODS)
        list(_only_corrigo_errors(errors, grpc.StatusCode.UNAUTHENTICATED))
    # A good token and empty requests: the streams fail in their handlers.
    for errors in (
        await asyncio.to_thread(through_client, org.admin_token, STREAMING),
        await through_async_client(org.admin_token, STREAMING),
    ):
        codes = {error.code for error in _only_corrigo_errors(errors)}
        assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}, codes


async def test_a_stream_read_call_by_call_fails_with_a_corrigo_error(org: Org) -> None:
    missing = datasets_pb2.StreamExportDatasetRequest(owner=org.name, name="nope")
    stream = org.admin.datasets.StreamExportDataset(missing)
    with pytest.raises(CorrigoError) as err:
        await stream.read()
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.reason == "RESOURCE_NOT_FOUND"

    def blocking() -> CorrigoError:
        with Client(org.running.target, org.admin_token) as client:
            try:
                next(client.datasets.StreamExportDataset(missing))
            except CorrigoError as error:
                return error
        raise AssertionError("the export of a missing dataset succeeded")

    assert (await asyncio.to_thread(blocking)).code == grpc.StatusCode.NOT_FOUND
