"""Assembles and runs the gRPC server: services, health and readiness, reflection,
interceptors, metrics and traces, TLS, limits and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from corrigo.server.api import pagination, reflection, registration
from corrigo.server.api.interceptors import interceptors
from corrigo.server.config import Config, ConfigError, split_listen
from corrigo.server.domain import correction_work, follow, purge_work
from corrigo.server.ops import (
    background,
    change_retention,
    listen,
    memory,
    metrics,
    request_id_sweep,
    token_use,
    tracing,
)
from corrigo.server.services import datasets as datasets_service
from corrigo.server.services.admin import AdminService
from corrigo.server.services.correction import CorrectionSessionService
from corrigo.server.services.datasets import DatasetService
from corrigo.server.services.document_groups import DocumentGroupService
from corrigo.server.services.few_shot import FewShotExampleService
from corrigo.server.services.improvement import ImprovementService
from corrigo.server.services.models import ModelService
from corrigo.server.services.practice_catalog import PracticeCatalogService
from corrigo.server.services.practice_sessions import PracticeSessionService
from corrigo.server.services.sources import SourceService
from corrigo.server.store import commit_notices, connections, database, identity
from corrigo.v1 import (
    admin_pb2,
    correction_pb2,
    datasets_pb2,
    improvement_pb2,
    models_pb2,
    practice_pb2,
    sources_pb2,
)

log = logging.getLogger("corrigo.server")
# The readiness check's own deadline: a database that takes longer is not ready.
READINESS_TIMEOUT = 3.0
_PING = database.Sql("SELECT 1", bounded=True)


@dataclass(frozen=True)
class ServiceEntry:
    descriptor: ServiceDescriptor
    servicer: Callable[[], Any]
    # RPCs whose handlers may answer already serialized bytes (see registration).
    raw: frozenset[str] = frozenset()

    def register(self, server: grpc.aio.Server) -> None:
        registration.register(self.servicer(), server, self.descriptor, self.raw)


def _service(file: FileDescriptor, servicer: Callable[[], Any], **kwargs: Any) -> ServiceEntry:
    """The entry of the service `servicer` implements (the class name is the service's)."""
    return ServiceEntry(file.services_by_name[servicer.__name__], servicer, **kwargs)


SERVICES = [
    _service(admin_pb2.DESCRIPTOR, AdminService),
    _service(practice_pb2.DESCRIPTOR, PracticeCatalogService),
    _service(practice_pb2.DESCRIPTOR, FewShotExampleService),
    _service(practice_pb2.DESCRIPTOR, PracticeSessionService),
    _service(improvement_pb2.DESCRIPTOR, ImprovementService),
    _service(sources_pb2.DESCRIPTOR, SourceService),
    _service(datasets_pb2.DESCRIPTOR, DatasetService, raw=frozenset(datasets_service.RAW_ANSWERS)),
    _service(models_pb2.DESCRIPTOR, ModelService),
    _service(correction_pb2.DESCRIPTOR, CorrectionSessionService),
    _service(correction_pb2.DESCRIPTOR, DocumentGroupService),
]


def _cannot_listen(address: str) -> str:
    return (
        f"cannot listen on {address} (in use, or not an address of this host); pass "
        "--listen HOST:PORT, or set CORRIGO_LISTEN (as `CORRIGO_LISTEN=127.0.0.1:50052 "
        "make run`)"
    )


class CorrigoServer:
    """A started server; `port` is the bound port (useful with port 0)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        db: database.Database,
        port: int,
        metrics: metrics.Metrics | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.db = db
        self.port = port
        self.metrics = metrics
        self.metrics_port = metrics_port

    @classmethod
    async def start(cls, config: Config) -> CorrigoServer:
        tracing.enable_from_environment()
        measured: metrics.Metrics | None = None
        metrics_port: int | None = None
        if config.metrics_listen:
            kind = "postgresql" if database.is_postgres(config.database_url) else "sqlite"
            measured = metrics.Metrics(kind)
            metrics.activate(measured)
            # Workers count into the files the supervisor serves (server/ops/workers.py).
            if config.workers == 1:
                metrics_port = measured.serve(*split_listen(config.metrics_listen))
                log.info("metrics on port %d at /metrics", metrics_port)
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            # Workers share the port the supervisor claimed; a lone server owns its port.
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
        ]
        server = grpc.aio.server(
            interceptors=interceptors(measured, os.getpid() if config.workers > 1 else None),
            options=options,
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        for entry in SERVICES:
            entry.register(server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = [entry.descriptor.full_name for entry in SERVICES]
        reflection.enable(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server
        )
        # Bound before the database opens, so a taken address fails before any pool or
        # background task exists that would keep the process alive.
        # A worker joins the address its supervisor claimed (server/ops/port_claim.py), which
        # such a check would find taken: the supervisor checked it for all of them.
        if config.workers == 1 and not listen.can_listen(config.listen):
            raise ConfigError(_cannot_listen(config.listen))
        try:
            if config.tls_cert and config.tls_key:
                key = await asyncio.to_thread(Path(config.tls_key).read_bytes)
                cert = await asyncio.to_thread(Path(config.tls_cert).read_bytes)
                credentials = grpc.ssl_server_credentials([(key, cert)])
                port = server.add_secure_port(config.listen, credentials)
            else:
                port = server.add_insecure_port(config.listen)
        except OSError as err:
            raise ConfigError(
                f"cannot read the TLS key or certificate: {err}; check --tls-key and --tls-cert"
            ) from err
        except RuntimeError as err:
            raise ConfigError(_cannot_listen(config.listen)) from err
        connections.configure(statement_seconds=config.statement_timeout)
        follow.configure(
            max_followers=config.max_followers, retention_seconds=config.change_retention
        )
        db = database.connect(config.database_url, pool_size=config.db_pool_size)
        applied = await database.migrate(db)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        pagination.configure(pagination.PageTokens(await identity.server_secret("page_tokens")))
        # Background work (correction sessions being prepared or deleted, deleted rows
        # being purged) is tracked from here on; the sweepers resume what a stopped or
        # crashed server left.
        background.open_background()
        correction_work.start_sweeping()
        purge_work.start_sweeping()
        token_use.start_recording()
        request_id_sweep.start_sweeping()
        change_retention.start_sweeping(config.change_retention)
        memory.start_trimming()
        if database.is_postgres(config.database_url):
            work = background.current()
            work.spawn(commit_notices.run(config.database_url, work), "commit-notices")

        await server.start()
        for name in ["", *names]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        background.current().spawn(
            _follow_database(health_servicer, names, config.readiness_interval), "readiness"
        )
        log.info("serving on port %d (%s)", port, "TLS" if config.tls_cert else "plaintext")
        return cls(server, health_servicer, db, port, measured, metrics_port)

    async def stop(self, grace: float) -> None:
        """Health turns NOT_SERVING, new calls are refused, in-flight calls get `grace`
        seconds (follow streams end at their next look), background work gets `grace`
        seconds to reach the end of its step (then it is cancelled), then the database
        pool closes."""
        await self.health.enter_graceful_shutdown()
        background.current().drain()
        await self.server.stop(grace)
        await background.current().close(grace)
        await self.db.close_pool()
        if self.metrics is not None:
            await self.metrics.stop()
            if metrics.active() is self.metrics:
                metrics.activate(None)


async def database_ready() -> bool:
    """Whether the database answers a trivial statement within READINESS_TIMEOUT."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await database.fetch(_PING, ())
    except Exception as error:
        log.debug("readiness check failed: %r", error)
        return False
    return True


async def _follow_database(
    health_servicer: health.aio.HealthServicer, names: list[str], interval: float
) -> None:
    """Readiness: every `interval` seconds, each corrigo.v1 service is SERVING while the
    database answers and NOT_SERVING while it does not. The overall status ("") stays
    SERVING: it is liveness, and restarting a server does not bring its database back."""
    work = background.current()
    ready = True
    while not await work.pause(interval):
        now_ready = await database_ready()
        metrics.database_reachable(now_ready)
        if now_ready == ready:
            continue
        ready = now_ready
        if ready:
            log.warning("the database answers again: services are SERVING")
        else:
            log.warning("the database does not answer: services are NOT_SERVING")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in names:
            await health_servicer.set(name, status)


async def serve(config: Config, started: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; `started` is called once
    the server answers."""
    memory.give_back_large_blocks()
    running = await CorrigoServer.start(config)
    if started is not None:
        started()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: in-flight calls get %.1fs", config.grace_seconds)
    await running.stop(config.grace_seconds)
    # Spans still buffered are exported before the process ends.
    await asyncio.to_thread(tracing.disable)
    log.info("stopped")
