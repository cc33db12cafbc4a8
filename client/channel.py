"""Channels to a Corrigo server: target, TLS, bearer token, retries and error decoding."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from corrigo.client import api
from corrigo.client.errors import CorrigoError
from corrigo.v1 import options_pb2

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def retry_of(method: MethodDescriptor) -> int:
    """The RPC's declared `(corrigo.v1.retry)` (RETRY_UNSPECIFIED when it declares none)."""
    retry: int = method.GetOptions().Extensions[options_pb2.retry]
    return retry


def retried(method: MethodDescriptor) -> bool:
    """Whether the client sends the RPC again after UNAVAILABLE: as the protos declare."""
    return retry_of(method) in (options_pb2.RETRY_IDEMPOTENT, options_pb2.RETRY_REQUEST_ID)


def service_config() -> str:
    """Retry UNAVAILABLE, with backoff, on the RPCs the protos declare retried."""
    names = [
        {"service": method.containing_service.full_name, "method": method.name}
        for method in api.methods()
        if retried(method)
    ]
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": names,
                    "retryPolicy": {
                        "maxAttempts": 5,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "3s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


# The paths (`/corrigo.v1.Service/Method`) of the RPCs retried with a request id.
_REQUEST_ID_PATHS = frozenset(
    api.path(method).encode()
    for method in api.methods()
    if retry_of(method) == options_pb2.RETRY_REQUEST_ID
)


def with_request_id(method: str | bytes, request: Any) -> Any:
    """`request` with a fresh `request_id` when its RPC is retried by request id and the
    caller chose none: every attempt the channel makes then carries the same id, so the
    server acts once (AIP-155)."""
    path = method.encode() if isinstance(method, str) else method
    if path not in _REQUEST_ID_PATHS or request.request_id:
        return request
    copy: Message = type(request)()
    copy.CopyFrom(request)
    copy.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    return copy


def channel_options() -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", service_config()),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # A server that is down is tried again every 2 s at most (grpc's default backoff
        # grows to 2 minutes), so a command waiting for it (`reachable`) sees it come up.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


def resolve(target: str | None, token: str | None) -> tuple[str, str | None]:
    return (
        target or os.environ.get("CORRIGO_TARGET") or DEFAULT_TARGET,
        token if token is not None else os.environ.get("CORRIGO_TOKEN"),
    )


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _with_token(details: Any, token: str | None, factory: Callable[..., Any]) -> Any:
    metadata = list(details.metadata or ())
    metadata.extend(auth_metadata(token))
    fields = {name: getattr(details, name) for name in details._fields}
    fields["metadata"] = metadata
    return factory(**fields)


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


_ClientCallDetails._fields = (
    "method",
    "timeout",
    "metadata",
    "credentials",
    "wait_for_ready",
    "compression",
)


def _raise_decoded(outcome: Any) -> Any:
    error = outcome if isinstance(outcome, grpc.RpcError) else outcome.exception()
    if isinstance(error, grpc.RpcError):
        raise CorrigoError.from_rpc_error(error)
    if error is not None:
        raise error
    return outcome


class DecodedStream(grpc.Call, Iterator[Any]):
    """A streaming call's responses, whose failure is a CorrigoError: the call grpc
    returns raises its own error type from `next()`."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> DecodedStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            raise CorrigoError.from_rpc_error(error) from None

    def cancel(self) -> bool:
        return bool(self._call.cancel())

    def is_active(self) -> bool:
        return bool(self._call.is_active())

    def time_remaining(self) -> float | None:
        remaining: float | None = self._call.time_remaining()
        return remaining

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._call.add_callback(callback))

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = self._call.code()
        return code

    def details(self) -> str:
        return str(self._call.details() or "")


class TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to every call; every failure raises CorrigoError."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    def _details(self, details: Any) -> Any:
        return _with_token(details, self._token, _ClientCallDetails)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        request = with_request_id(details.method, request)
        return _raise_decoded(continuation(self._details(details), request))

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return DecodedStream(continuation(self._details(details), request))

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return _raise_decoded(continuation(self._details(details), requests))

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return DecodedStream(continuation(self._details(details), requests))


class _AsyncToken:
    def __init__(self, token: str | None) -> None:
        self._token = token

    def _details(self, details: Any) -> Any:
        return _with_token(details, self._token, grpc.aio.ClientCallDetails)


class AsyncTokenInterceptor(_AsyncToken, grpc.aio.UnaryUnaryClientInterceptor):
    """The asyncio twin of TokenInterceptor for unary calls: adds the token, raises
    CorrigoError. `async_interceptors` gives the ones for streaming calls."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        request = with_request_id(details.method, request)
        call = await continuation(self._details(details), request)
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise CorrigoError.from_rpc_error(error) from None


async def _decoded(call: Any) -> AsyncIterator[Any]:
    """A streaming call's responses, whose failure is a CorrigoError (grpc.aio reads
    `read()` and `async for` of the call it returns through this iterator)."""
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as error:
        raise CorrigoError.from_rpc_error(error) from None


class _AsyncUnaryStreamToken(_AsyncToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _decoded(await continuation(self._details(details), request))


class _AsyncStreamUnaryToken(_AsyncToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        call = await continuation(self._details(details), request_iterator)
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise CorrigoError.from_rpc_error(error) from None


class _AsyncStreamStreamToken(_AsyncToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return _decoded(await continuation(self._details(details), request_iterator))


def async_interceptors(token: str | None) -> list[Any]:
    """One interceptor per call kind: grpc.aio files an interceptor under the first kind
    it implements only, so one object implementing several kinds would leave streaming
    calls without the token."""
    return [
        AsyncTokenInterceptor(token),
        _AsyncUnaryStreamToken(token),
        _AsyncStreamUnaryToken(token),
        _AsyncStreamStreamToken(token),
    ]


def secure_credentials(root_certificates: bytes | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


def sync_channel(target: str, root_certificates: bytes | None, tls: bool) -> grpc.Channel:
    if tls:
        return grpc.secure_channel(
            target, secure_credentials(root_certificates), options=channel_options()
        )
    return grpc.insecure_channel(target, options=channel_options())


def async_channel(
    target: str, token: str | None, root_certificates: bytes | None, tls: bool
) -> grpc.aio.Channel:
    interceptors: Iterable[Any] = async_interceptors(token)
    if tls:
        return grpc.aio.secure_channel(
            target,
            secure_credentials(root_certificates),
            options=channel_options(),
            interceptors=interceptors,
        )
    return grpc.aio.insecure_channel(target, options=channel_options(), interceptors=interceptors)
