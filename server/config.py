"""Server configuration: command-line flags with CORRIGO_* environment fallbacks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

DEFAULT_URL = "sqlite:///corrigo.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:50051"
# Export pages stay far below this; it bounds what one request may make the server hold.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


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


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CORRIGO_{name}", default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        default=float(_env("GRACE_SECONDS", "10") or 10),
        help="seconds in-flight calls get on SIGTERM/SIGINT (env CORRIGO_GRACE_SECONDS; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(_env("MAX_MESSAGE_BYTES", str(DEFAULT_MAX_MESSAGE_BYTES)) or 0),
        help="largest request or response message (env CORRIGO_MAX_MESSAGE_BYTES; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=int(_env("MAX_CONCURRENT_RPCS", "0") or 0) or None,
        help="calls served at once; more are refused with RESOURCE_EXHAUSTED "
        "(env CORRIGO_MAX_CONCURRENT_RPCS; default unlimited)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (env CORRIGO_LOG_LEVEL; default %(default)s)",
    )


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
    return Config(
        listen=args.listen,
        database_url=args.database,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        grace_seconds=args.grace,
        max_message_bytes=args.max_message_bytes,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        log_level=args.log_level,
    )
