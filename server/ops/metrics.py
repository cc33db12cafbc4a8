"""Prometheus metrics, served at /metrics when `--metrics-listen` is given.

Two families: the gRPC server metrics of go-grpc-prometheus (same names, labels and
codes, so its dashboards and alerts work unchanged), counted by `GrpcMetricsInterceptor`
(server/api/interceptors.py); and Corrigo's own, prefixed `corrigo_`, reported through the
small functions below by the services and the store.

Every server with metrics has its own `Metrics` (its own CollectorRegistry, so servers
in one process do not collide). The reporting functions count into the one `activate`d
last, and do nothing when no server has metrics on: one check of a global.

With `--workers N`, prometheus_client's multiprocess mode: every worker writes its values
to files in PROMETHEUS_MULTIPROC_DIR (set by the supervisor before it spawns them) and the
supervisor serves them all (`serve_workers`): counters and histograms summed over the
workers, gauges one series per worker (label `pid`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import peewee
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
    start_http_server,
)

from corrigo.server.api.errors import CorrigoError, StorageFull, Unavailable

# go-grpc-prometheus's grpc_code values (Go's codes.Code.String()).
GO_CODE_NAMES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# A statement of the server is an indexed read or a small write: sub-millisecond buckets.
_STATEMENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def _version() -> str:
    try:
        return importlib.metadata.version("corrigo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """One server's metrics and their registry."""

    def __init__(self, database_kind: str) -> None:
        # go-grpc-prometheus exposes no `_created` series; neither do we.
        disable_created_metrics()
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.started = Counter(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*_RPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been "
            "application-level handled by the server.",
            _RPC_LABELS,
            registry=registry,
        )
        Gauge(
            "corrigo_build_info",
            "Always 1: the server's version and database kind.",
            ("version", "database"),
            registry=registry,
            multiprocess_mode="max",
        ).labels(_version(), database_kind).set(1)
        self.exported = Counter(
            "corrigo_comments_exported_total",
            "Comments written into export pages (unary and streaming).",
            registry=registry,
        )
        self.synced = Counter(
            "corrigo_comments_synced_total",
            "Comments synced, by result: new, updated or unchanged.",
            ("result",),
            registry=registry,
        )
        self.correction_sessions = Counter(
            "corrigo_correction_sessions_total",
            "Correction sessions that entered each status on this server.",
            ("status",),
            registry=registry,
        )
        self.sweeps = Counter(
            "corrigo_background_sweeps_total",
            "Sweeps for correction sessions that no server works on.",
            registry=registry,
        )
        self.leases_taken_over = Counter(
            "corrigo_leases_taken_over_total",
            "Correction sessions a sweep took over (their lease was released or ran out).",
            registry=registry,
        )
        self.page_tokens_refused = Counter(
            "corrigo_page_tokens_refused_total",
            "Page tokens and continuations refused as invalid or issued for another query.",
            registry=registry,
        )
        self.connections_in_use = Gauge(
            "corrigo_database_connections_in_use",
            "Database connections held by the server's work right now.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.connections_waiting = Gauge(
            "corrigo_database_connections_waiting",
            "Units of work waiting for a database connection right now.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.statement_seconds = Histogram(
            "corrigo_database_statement_seconds",
            "Time a database statement took, from sending it to its last row.",
            buckets=_STATEMENT_BUCKETS,
            registry=registry,
        )
        self.rolled_back = Counter(
            "corrigo_database_transactions_rolled_back_total",
            "Transactions rolled back, by cause: refused (a domain error such as bad input "
            "or a conflict), cancelled, unavailable (the database), integrity, error.",
            ("cause",),
            registry=registry,
        )
        self.followers = Gauge(
            "corrigo_export_followers",
            "Export streams in follow mode open right now.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.follow_lag = Gauge(
            "corrigo_export_follow_lag_seconds",
            "The longest any follow stream has had committed changes not yet sent (0: all "
            "caught up), as the streams last looked.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.database_up = Gauge(
            "corrigo_database_up",
            "1 while the readiness check reaches the database, else 0.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.database_up.set(1)
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def method(self, rpc_type: str, full_method: str) -> MethodMetrics:
        """The series of one RPC (`/package.Service/Method`), looked up once per method."""
        service, _, name = full_method.lstrip("/").partition("/")
        labels = (rpc_type, service, name)
        return MethodMetrics(
            self.started.labels(*labels),
            self.received.labels(*labels),
            self.sent.labels(*labels),
            self.handling.labels(*labels),
            self.handled,
            labels,
        )

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on `host`:`port` (port 0 picks one); the bound port."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    async def stop(self) -> None:
        if self._http is not None:
            await asyncio.to_thread(self._http.shutdown)
            self._http.server_close()
            self._http = None


def serve_workers(host: str, port: int, directory: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on `host`:`port` for every worker writing into `directory`."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return start_http_server(port, addr=host, registry=registry)


def worker_gone(pid: int, directory: str) -> None:
    """A worker ended: its gauges leave the scrape (its counts stay in the sums)."""
    multiprocess.mark_process_dead(pid, directory)


@dataclass
class MethodMetrics:
    started: Counter
    received: Counter
    sent: Counter
    handling: Histogram
    _handled: Counter
    _labels: tuple[str, str, str]
    _by_code: dict[grpc.StatusCode, Counter] = field(default_factory=dict)

    def handled(self, code: grpc.StatusCode) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._handled.labels(
                *self._labels, GO_CODE_NAMES.get(code, "Unknown")
            )
        child.inc()


_active: Metrics | None = None


def activate(metrics: Metrics | None) -> None:
    """Count the services' and the store's reports into `metrics` (None: nowhere)."""
    global _active
    _active = metrics


def active() -> Metrics | None:
    return _active


# The reporting functions: each a no-op while no server has metrics on.


def comments_exported(count: int) -> None:
    if _active is not None:
        _active.exported.inc(count)


def comments_synced(new: int, updated: int, unchanged: int) -> None:
    if _active is not None:
        synced = _active.synced
        synced.labels("new").inc(new)
        synced.labels("updated").inc(updated)
        synced.labels("unchanged").inc(unchanged)


def correction_session_entered(status: str) -> None:
    if _active is not None:
        _active.correction_sessions.labels(status).inc()


def swept(taken_over: int) -> None:
    if _active is not None:
        _active.sweeps.inc()
        _active.leases_taken_over.inc(taken_over)


def page_token_refused() -> None:
    if _active is not None:
        _active.page_tokens_refused.inc()


def database_reachable(up: bool) -> None:
    if _active is not None:
        _active.database_up.set(1 if up else 0)


# The store's hooks (see README "Operations" and the store's connection layer).


# What the hooks answer while metrics are off: shared, so they cost no allocation.
_NOTHING: AbstractContextManager[Any] = contextlib.nullcontext()


def statement() -> AbstractContextManager[Any]:
    """Around one statement, from sending it to its last row: its duration."""
    return _NOTHING if _active is None else _active.statement_seconds.time()


def waiting_for_connection() -> AbstractContextManager[Any]:
    """Around the wait for a pool's connection."""
    return _NOTHING if _active is None else _active.connections_waiting.track_inprogress()


def following(change: int) -> None:
    """A follow stream began (+1) or ended (-1)."""
    if _active is not None:
        _active.followers.inc(change)


def follow_lag(seconds: float) -> None:
    """The longest any follow stream has had changes waiting to be sent."""
    if _active is not None:
        _active.follow_lag.set(seconds)


def connection_taken() -> None:
    """A connection was taken from the pool (call once per take)."""
    if _active is not None:
        _active.connections_in_use.inc()


def connection_given_back() -> None:
    """A connection taken went back to the pool, or was discarded."""
    if _active is not None:
        _active.connections_in_use.dec()


def rollback_cause(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, Unavailable):
        return "unavailable"
    if isinstance(error, StorageFull):
        return "storage_full"
    if isinstance(error, CorrigoError):
        return "refused"
    if isinstance(error, peewee.IntegrityError):
        return "integrity"
    return "error"


def transaction_rolled_back(error: BaseException) -> None:
    """A transaction ended by `error` was rolled back."""
    if _active is not None:
        _active.rolled_back.labels(rollback_cause(error)).inc()
