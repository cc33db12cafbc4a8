"""OpenTelemetry traces, with the `corrigo[otel]` extra, when the standard OTEL_*
environment asks for an exporter.

Every RPC is a server span (the OpenTelemetry gRPC instrumentation's grpc.aio
interceptor, which honours the caller's W3C trace context); database statements and
transactions, and the background steps of correction sessions, are child spans.
Until `enable` runs nothing of OpenTelemetry is imported, and `span` answers a shared
do-nothing context manager.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

log = logging.getLogger("corrigo.tracing")

_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()
_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* environment asks for traces: an exporter named by
    OTEL_TRACES_EXPORTER (other than `none`), or an OTLP endpoint; never with
    OTEL_SDK_DISABLED=true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enable_from_environment() -> None:
    """Trace as the OTEL_* environment says (see `wanted`); nothing when it says
    nothing, or when tracing is on already."""
    if _tracer is not None or not wanted():
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise SystemExit(
            f"OTEL_* asks for traces but OpenTelemetry is not installed ({error}): "
            "install corrigo[otel]"
        ) from None
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override this default name.
    provider = TracerProvider(resource=Resource.create({"service.name": "corrigo"}))
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    enable(provider)


def _exporter() -> Any:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    name = names.split(",")[0].strip()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise SystemExit(f"OTEL_TRACES_EXPORTER={names!r}: corrigo knows otlp and console")
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    if protocol.strip().lower().startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter()


def enable(provider: TracerProvider) -> None:
    """Trace through `provider` (tests pass one with an in-memory exporter)."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("corrigo.server")
    log.info("tracing on")


def disable() -> None:
    """Flush and stop tracing (spans ended so far are exported)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def interceptor() -> grpc.aio.ServerInterceptor | None:
    """The server-span interceptor (outermost), or None when tracing is off."""
    if _provider is None:
        return None
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    # Health checks (probes every few seconds) would fill the traces with nothing.
    made: grpc.aio.ServerInterceptor = aio_server_interceptor(
        tracer_provider=_provider, filter_=filters.negate(filters.health_check())
    )
    return made


def span(
    name: str, attributes: dict[str, Any] | None = None, parent: Context | None = None
) -> AbstractContextManager[Any]:
    """A child span of the current one (or of `parent`, from `current_context`) around a
    block; a do-nothing block when tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, context=parent, attributes=attributes)


def current_context() -> Context | None:
    """The current trace context, for work that runs in another task (such as a
    background task started by a call); None when tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


def trace_id() -> str | None:
    """The current span's trace id (32 hex digits), or None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _in_a_trace() -> bool:
    from opentelemetry import trace

    return bool(trace.get_current_span().get_span_context().is_valid)


def database_span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
    """A span around database work (a transaction), only as a child of a call's or a
    background step's span: a lone one (the readiness check's) would be a trace of its
    own every few seconds."""
    if _tracer is None or not _in_a_trace():
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def statement(sql: str, system: str) -> AbstractContextManager[Any]:
    """A span around one database statement (`system`: sqlite or postgresql), as
    `database_span`; its text has placeholders, never values."""
    if _tracer is None or not _in_a_trace():
        return _NO_SPAN
    return _tracer.start_as_current_span(
        sql.split(None, 1)[0].upper() if sql else "statement",
        attributes={"db.system": system, "db.statement": sql},
    )
