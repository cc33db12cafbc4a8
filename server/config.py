"""Server configuration: command-line flags with CORRIGO_* environment fallbacks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

DEFAULT_URL = "sqlite:///corrigo.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:50051"
# Export pages stay far below this; it bounds what one request may make the server hold.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Seconds between readiness checks of the database: a few, so an outage shows within a
# probe period or two, at one trivial statement per interval.
DEFAULT_READINESS_INTERVAL = 5.0
# The longest one statement of a call without a deadline may run.
DEFAULT_STATEMENT_TIMEOUT = 30.0
# Database connections: half for reads, half for writes (on SQLite, one writer).
DEFAULT_DB_POOL_SIZE = 16
DEFAULT_MAX_FOLLOWERS = 256
# How long deletes are kept for follow streams: 7 days.
DEFAULT_CHANGE_RETENTION = 7 * 24 * 3600.0


def workers(value: str) -> int:
    """An argparse type: a number of server processes, or `auto` for the cores this
    process may run on."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers: use N >= 1 or auto")


class ConfigError(Exception):
    """The server cannot start as configured (an address it cannot listen on, TLS files it
    cannot read); the message says what to change."""


def database_url(value: str) -> str:
    """An argparse type: the URL when its scheme is one the store opens."""
    if value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgres://")):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r} is not a database URL: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )


@dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    database_url: str = DEFAULT_URL
    tls_cert: str | None = None
    tls_key: str | None = None
    grace_seconds: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_rpcs: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    # HOST:PORT of the Prometheus endpoint; None: no metrics.
    metrics_listen: str | None = None
    readiness_interval: float = DEFAULT_READINESS_INTERVAL
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    # Export streams in follow mode one process serves at once.
    max_followers: int = DEFAULT_MAX_FOLLOWERS
    change_retention: float = DEFAULT_CHANGE_RETENTION
    # Server processes on `listen` (server/ops/workers.py); 1 runs no supervisor.
    workers: int = 1


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CORRIGO_{name}", default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's flags. Environment values are given as string defaults, which argparse
    converts like the flags themselves: a bad one is a usage error naming the flag."""
    parser.add_argument(
        "--listen",
        default=_env("LISTEN", DEFAULT_LISTEN),
        help="HOST:PORT to serve on (env CORRIGO_LISTEN; default %(default)s)",
    )
    add_database_argument(parser)
    parser.add_argument(
        "--tls-cert", default=_env("TLS_CERT"), help="PEM certificate chain (env CORRIGO_TLS_CERT)"
    )
    parser.add_argument(
        "--tls-key", default=_env("TLS_KEY"), help="PEM private key (env CORRIGO_TLS_KEY)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=_env("GRACE_SECONDS", "10"),
        help="seconds in-flight calls get on SIGTERM/SIGINT (env CORRIGO_GRACE_SECONDS; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=_env("MAX_MESSAGE_BYTES", str(DEFAULT_MAX_MESSAGE_BYTES)),
        help="largest request or response message (env CORRIGO_MAX_MESSAGE_BYTES; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=_env("MAX_CONCURRENT_RPCS", "0"),
        help="calls served at once; more are refused with RESOURCE_EXHAUSTED "
        "(env CORRIGO_MAX_CONCURRENT_RPCS; default unlimited)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (env CORRIGO_LOG_LEVEL; default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default=_env("LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="text lines, or one JSON object per line (env CORRIGO_LOG_FORMAT; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--metrics-listen",
        default=_env("METRICS_LISTEN") or None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (env "
        "CORRIGO_METRICS_LISTEN; default off)",
    )
    parser.add_argument(
        "--statement-timeout",
        type=float,
        default=_env("STATEMENT_TIMEOUT", str(DEFAULT_STATEMENT_TIMEOUT)),
        metavar="SECONDS",
        help="the longest one database statement of a call without a deadline runs; then "
        "it is stopped and the call answers DEADLINE_EXCEEDED (a call's own deadline always "
        "bounds its statements) (env CORRIGO_STATEMENT_TIMEOUT; default %(default)s)",
    )
    parser.add_argument(
        "--db-pool-size",
        type=int,
        default=_env("DB_POOL_SIZE", str(DEFAULT_DB_POOL_SIZE)),
        metavar="N",
        help="database connections: PostgreSQL half for reads and half for writes; SQLite "
        "one writer and N-1 readers (env CORRIGO_DB_POOL_SIZE; default %(default)s)",
    )
    parser.add_argument(
        "--max-followers",
        type=int,
        default=_env("MAX_FOLLOWERS", str(DEFAULT_MAX_FOLLOWERS)),
        metavar="N",
        help="export streams in follow mode one server process serves at once; more are "
        "refused with RESOURCE_EXHAUSTED (env CORRIGO_MAX_FOLLOWERS; default %(default)s)",
    )
    parser.add_argument(
        "--change-retention",
        type=float,
        default=_env("CHANGE_RETENTION", str(DEFAULT_CHANGE_RETENTION)),
        metavar="SECONDS",
        help="how long deletes are kept for follow streams; a follow continuation older "
        "than that is refused with FAILED_PRECONDITION (env CORRIGO_CHANGE_RETENTION; "
        "default %(default)s, 7 days)",
    )
    parser.add_argument(
        "--workers",
        type=workers,
        default=_env("WORKERS", "1"),
        metavar="N",
        help="server processes answering on --listen, watched by one supervisor; auto: one "
        "per core this process may use (env CORRIGO_WORKERS; default %(default)s)",
    )
    parser.add_argument(
        "--readiness-interval",
        type=float,
        default=_env("READINESS_INTERVAL", str(DEFAULT_READINESS_INTERVAL)),
        help="seconds between the readiness checks of the database (env "
        "CORRIGO_READINESS_INTERVAL; default %(default)s)",
    )


def split_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (`[::1]:9464` for IPv6; `:9464` for every interface) as (host, port)."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        type=database_url,
        default=_env("DATABASE_URL", DEFAULT_URL),
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (env CORRIGO_DATABASE_URL; "
        "default %(default)s)",
    )


def from_arguments(args: argparse.Namespace) -> Config:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("corrigo serve: --tls-cert and --tls-key must be given together")
    if args.metrics_listen:
        try:
            split_listen(args.metrics_listen)
        except ValueError as error:
            raise SystemExit(f"corrigo serve: --metrics-listen: {error}") from None
    if args.readiness_interval <= 0:
        raise SystemExit("corrigo serve: --readiness-interval must be above 0")
    if args.statement_timeout <= 0:
        raise SystemExit("corrigo serve: --statement-timeout must be above 0")
    if args.change_retention <= 0:
        raise SystemExit("corrigo serve: --change-retention must be above 0")
    if args.max_followers < 0:
        raise SystemExit("corrigo serve: --max-followers must be 0 or more")
    if args.db_pool_size < 2:
        raise SystemExit("corrigo serve: --db-pool-size must be at least 2 (reads and writes)")
    return Config(
        listen=args.listen,
        database_url=args.database,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        grace_seconds=args.grace,
        max_message_bytes=args.max_message_bytes,
        max_concurrent_rpcs=args.max_concurrent_rpcs or None,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_listen=args.metrics_listen,
        readiness_interval=args.readiness_interval,
        statement_timeout=args.statement_timeout,
        db_pool_size=args.db_pool_size,
        max_followers=args.max_followers,
        change_retention=args.change_retention,
        workers=args.workers,
    )
