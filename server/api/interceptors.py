"""Server interceptors: metrics, access logging and error mapping, and the wrapping they
share.

Each concern is a small async context manager run around every handler (unary or
streaming). `MiddlewareInterceptor` wraps the handler found for a call, so the
middleware runs in the handler's own task: context variables it sets are visible to
the handler, and exceptions the handler raises reach it.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from corrigo.server.api import auth, request_ids
from corrigo.server.api.errors import CorrigoError, Internal, InvalidArgument
from corrigo.server.ops import tracing
from corrigo.server.ops.metrics import MethodMetrics, Metrics
from corrigo.server.store.connections import call_deadline

Middleware = Callable[
    [str, grpc.aio.ServicerContext, Message | None], AbstractAsyncContextManager[None]
]

access_log = logging.getLogger("corrigo.access")
error_log = logging.getLogger("corrigo.errors")


def _rebuilt(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Callable[..., Any], bool], Any],
    request_deserializer: Callable[[bytes], Any] | None,
) -> Any:
    """`handler` with its behavior replaced by `wrap(behavior, unary_request)`, and its
    requests parsed by `request_deserializer`."""
    codec = {
        "request_deserializer": request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, True), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **codec)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, False), **codec)


async def _first_of(requests: AsyncIterator[Any]) -> tuple[Any, AsyncIterator[Any]]:
    """A client stream's first message (None when it is empty), and the whole stream."""
    iterator = aiter(requests)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        return None, iterator

    async def whole() -> AsyncIterator[Any]:
        yield first
        async for request in iterator:
            yield request

    return first, whole()


def _wrap(
    handler: grpc.RpcMethodHandler, method: str, middleware: Middleware, first_message: bool
) -> Any:
    """`handler` run inside `middleware`, which is given the request (of a client stream:
    None, or with `first_message` its first message, read before the handler runs)."""

    async def seen(request: Any, unary_request: bool) -> tuple[Any, Any]:
        if unary_request:
            return request, request
        if first_message:
            return await _first_of(request)
        return None, request

    def around(inner: Callable[..., Any], unary_request: bool) -> Any:
        if inspect.isasyncgenfunction(inner):

            async def stream_behavior(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                shown, request = await seen(request, unary_request)
                async with middleware(method, context, shown):
                    async for response in inner(request, context):
                        yield response

            return stream_behavior

        # Unary answers, and streams answered through `context.write` (such as Health/Watch).
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            shown, request = await seen(request, unary_request)
            async with middleware(method, context, shown):
                return await inner(request, context)

        return behavior

    return _rebuilt(handler, around, handler.request_deserializer)


class _WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Answers the handler found for a call wrapped by `wrapped`, built once per method:
    grpcio asks the interceptors on every call, and the handler found for a method is
    the same object every time (the inner interceptors answer theirs from here too)."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    @abc.abstractmethod
    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` as this interceptor serves it."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        built = self._built.get(method)
        if built is None or built[0] is not handler:
            built = self._built[method] = (handler, self.wrapped(handler, method))
        return built[1]


class MiddlewareInterceptor(_WrappingInterceptor):
    def __init__(self, middleware: Middleware, *, first_message: bool = False) -> None:
        super().__init__()
        self._middleware = middleware
        self._first_message = first_message

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _wrap(handler, method, self._middleware, self._first_message)


class Undecodable:
    """A request that failed to parse (corrupt wire format, invalid UTF-8 in a string);
    stands in for the message so the call is answered INVALID_ARGUMENT, not UNKNOWN."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _reject_undecodable(item: Any) -> Any:
    if isinstance(item, Undecodable):
        raise InvalidArgument.field("request", f"not a valid message: {item.problem}")
    return item


def _guard_decoding(handler: grpc.RpcMethodHandler) -> Any:
    parse = handler.request_deserializer

    def safe_parse(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as err:
            return Undecodable(str(err))

    async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for item in requests:
            yield _reject_undecodable(item)

    def guarded(inner: Callable[..., Any], check: Callable[[Any], Any]) -> Any:
        """`inner` with its request (or request stream) passed through `check` first."""
        if inspect.isasyncgenfunction(inner):

            async def stream_behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                async for response in inner(check(request), context):
                    yield response

            return stream_behavior

        async def behavior(request: Any, context: Any) -> Any:
            return await inner(check(request), context)

        return behavior

    return _rebuilt(
        handler,
        lambda inner, unary: guarded(inner, _reject_undecodable if unary else checked),
        safe_parse,
    )


class RequestIdInterceptor(_WrappingInterceptor):
    """The RPCs declared RETRY_REQUEST_ID answer once per request id (`request_ids`)."""

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        answer = request_ids.answer_type(method)
        if answer is None or not handler.unary_unary:
            return handler
        return _rebuilt(
            handler,
            lambda inner, unary: request_ids.answered_once(inner, method, answer),
            handler.request_deserializer,
        )


class DecodeGuardInterceptor(_WrappingInterceptor):
    """Innermost: turns requests that do not parse into INVALID_ARGUMENT on `request`
    (grpcio would answer UNKNOWN). The layers outside it see an `Undecodable` request."""

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _guard_decoding(handler)


@asynccontextmanager
async def log_access(
    method: str, context: grpc.aio.ServicerContext, request: Message | None
) -> AsyncIterator[None]:
    """One line per call: method, code, duration, principal, peer. Never a token."""
    start = time.perf_counter()
    code = grpc.StatusCode.OK
    # Read before the call runs: once a client cancels a stream, asking the finished
    # call for its peer crashes the process (grpcio 1.85).
    peer = context.peer()
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away: a unary call is cancelled, a stream closed at its yield.
        code = grpc.StatusCode.CANCELLED
        raise
    except BaseException:
        code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    finally:
        call = auth.current_or_none()
        fields = {
            "method": method,
            "code": code.name if isinstance(code, grpc.StatusCode) else str(code),
            "duration_ms": round((time.perf_counter() - start) * 1000, 1),
            "principal": f"user:{call.principal.user_id}" if call else "-",
            "peer": peer,
            "trace_id": tracing.trace_id(),
        }
        # The JSON log format writes `access` as fields of the line (server/ops/logs.py).
        access_log.info(
            "rpc method=%s code=%s duration_ms=%.1f principal=%s peer=%s%s",
            fields["method"],
            fields["code"],
            fields["duration_ms"],
            fields["principal"],
            peer,
            f" trace_id={fields['trace_id']}" if fields["trace_id"] else "",
            extra={"access": fields},
        )


@asynccontextmanager
async def map_errors(
    method: str, context: grpc.aio.ServicerContext, request: Message | None
) -> AsyncIterator[None]:
    """Domain errors become their status; anything unexpected becomes INTERNAL with an id
    that is also logged with the stack, and the client sees neither stack nor SQL."""
    remaining = context.time_remaining()
    if remaining is not None:
        # The store waits for a database connection no longer than the call may last.
        call_deadline.set(asyncio.get_running_loop().time() + remaining)
    try:
        yield
    except CorrigoError as err:
        status = err.to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
    except (grpc.aio.AbortError, grpc.aio.UsageError):
        raise
    except Exception:
        error_id = uuid.uuid4().hex[:12]
        error_log.exception("unexpected error in %s (error id %s)", method, error_id)
        status = Internal.logged_as(error_id).to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)


class _DropWritesToGoneClients(logging.Filter):
    """grpcio logs a stack when it cannot send a stream's next message because the client
    went away; the access log already records that call as CANCELLED."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("ExecuteBatchError raised in core")


_gone_clients = _DropWritesToGoneClients()


def _final_code(context: grpc.aio.ServicerContext, error: BaseException) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


async def _counted(requests: AsyncIterator[Any], series: MethodMetrics) -> AsyncIterator[Any]:
    received = series.received
    async for request in requests:
        received.inc()
        yield request


class _CountedWrites:
    """A call's context whose `write`s count as messages sent (for streams answered
    through `context.write`, such as Health/Watch); anything else is the context's."""

    def __init__(self, context: grpc.aio.ServicerContext, sent: Any) -> None:
        self._context = context
        self._sent = sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def write(self, message: Any) -> None:
        self._sent.inc()
        await self._context.write(message)


class _Handled:
    """`with _Handled(context, series):` around a call's handling: counts it started, then
    handled with its final code, and observes its handling time."""

    __slots__ = ("_began", "_context", "_series")

    def __init__(self, context: grpc.aio.ServicerContext, series: MethodMetrics) -> None:
        self._context = context
        self._series = series
        self._began = 0.0

    def __enter__(self) -> None:
        self._series.started.inc()
        self._began = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        series = self._series
        series.handling.observe(time.perf_counter() - self._began)
        series.handled(grpc.StatusCode.OK if error is None else _final_code(self._context, error))


def _measured(
    inner: Callable[..., Any], series: MethodMetrics, unary_request: bool, unary_response: bool
) -> Any:
    """`inner` counted as go-grpc-prometheus counts a call: started, every message
    received and sent, handled with its code, and its handling time."""
    received, sent = series.received, series.sent

    def requests_of(request: Any) -> Any:
        if unary_request:
            received.inc()
            return request
        return _counted(request, series)

    if inspect.isasyncgenfunction(inner):

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with _Handled(context, series):
                async for response in inner(requests_of(request), context):
                    sent.inc()
                    yield response

        return stream_behavior

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _Handled(context, series):
            response = await inner(
                requests_of(request), context if unary_response else _CountedWrites(context, sent)
            )
        if unary_response:
            sent.inc()
        return response

    return behavior


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.unary_unary:
        return "unary"
    if handler.unary_stream:
        return "server_stream"
    if handler.stream_unary:
        return "client_stream"
    return "bidi_stream"


class GrpcMetricsInterceptor(_WrappingInterceptor):
    """go-grpc-prometheus's server metrics; a method's series are looked up once."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        series = self._metrics.method(_rpc_type(handler), method)
        unary_response = not handler.response_streaming
        return _rebuilt(
            handler,
            lambda inner, unary_request: _measured(inner, series, unary_request, unary_response),
            handler.request_deserializer,
        )


# The trailing metadata key naming the worker (its pid) that answered, with --workers N.
WORKER_KEY = "x-corrigo-worker"


def _naming_worker(pid: int) -> Middleware:
    named = ((WORKER_KEY, str(pid)),)

    @asynccontextmanager
    async def name_worker(
        method: str, context: grpc.aio.ServicerContext, request: Message | None
    ) -> AsyncIterator[None]:
        # An error's own trailing metadata (its details) replaces this.
        context.set_trailing_metadata(named)
        yield

    return name_worker


def interceptors(
    metrics: Metrics | None = None, worker: int | None = None
) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first: the trace's server span (when tracing is on) holds everything;
    metrics and logging see the final code, errors are mapped for every layer inside
    them, authorization runs before the handler, and a create with a request id runs in
    the transaction that keeps its answer. A `worker` (pid) names itself in every answer's
    trailing metadata."""
    outer: list[grpc.aio.ServerInterceptor] = []
    traced = tracing.interceptor()
    if traced is not None:
        outer.append(traced)
    if metrics is not None:
        outer.append(GrpcMetricsInterceptor(metrics))
    if worker is not None:
        outer.append(MiddlewareInterceptor(_naming_worker(worker)))
    logging.getLogger("grpc._cython.cygrpc").addFilter(_gone_clients)
    return [
        *outer,
        MiddlewareInterceptor(log_access),
        MiddlewareInterceptor(map_errors),
        # A client stream's project is named by its first message.
        MiddlewareInterceptor(auth.authorize_call, first_message=True),
        RequestIdInterceptor(),
        DecodeGuardInterceptor(),
    ]
