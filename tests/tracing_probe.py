"""`python -m tests.tracing_probe traced|plain DATABASE_URL`: a server in this process,
a few calls, then one JSON document on stdout for tests/test_tracing.py.

traced: tracing on with the SDK's in-memory exporter; a call under a caller's W3C
trace context, and a correction session prepared in the background; prints the spans
(and the server logs as JSON lines on stderr). plain: tracing off; prints whether any
OpenTelemetry module was imported.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrigo.server.app import CorrigoServer
from corrigo.server.config import Config
from corrigo.server.ops import logs, tracing
from corrigo.v1 import admin_pb2
from tests import correction_helpers as ch
from tests.conftest import Running, bootstrapped

# The caller's trace: version 00, trace id, parent span id, sampled.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


async def _calls(running: Running, prepare_session: bool) -> None:
    async with grpc.aio.insecure_channel(running.target) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    async with bootstrapped(running, "probe") as org:
        await org.admin.admin.WhoAmI(
            admin_pb2.WhoAmIRequest(), metadata=(("traceparent", TRACEPARENT),)
        )
        await org.admin.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="probe"))
        )
        if prepare_session:
            made = await ch.corpus(org, 4)
            session = await made.create(sample_size=2)
            prepared = await ch.prepared(made, session)
            assert prepared.status == ch.Status.ANNOTATING, prepared


async def _serve(url: str, prepare_session: bool) -> None:
    server = await CorrigoServer.start(
        Config(listen="127.0.0.1:0", database_url=url, grace_seconds=1)
    )
    try:
        await _calls(Running(server, url), prepare_session)
    finally:
        await server.stop(1)


def _spans(exporter: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
            "attributes": dict(span.attributes or {}),
        }
        for span in exporter.get_finished_spans()
    ]


def main(mode: str, url: str) -> None:
    if mode == "plain":
        asyncio.run(_serve(url, prepare_session=False))
        loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
        print(json.dumps({"opentelemetry_modules": loaded}))
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    logs.configure("INFO", "json")
    asyncio.run(_serve(url, prepare_session=True))
    print(json.dumps({"spans": _spans(exporter)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
