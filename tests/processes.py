"""Helpers to run `corrigo` as a real process: the CLI, and servers on free ports."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import grpc
import psycopg2
from grpc_health.v1 import health_pb2, health_pb2_grpc

CORRIGO = [sys.executable, "-m", "corrigo.client.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRIGO_")}
    env.update(extra)
    return env


def corrigo(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CORRIGO, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(**env),
        check=False,
    )


def bootstrap(database_url: str, org: str, email: str) -> str:
    done = corrigo("admin", "bootstrap", "--org", org, "--email", email, "--database", database_url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class LoggedProcess:
    """A child process whose output goes to a log file; `stop`, or leaving a `with` block,
    ends it with SIGTERM."""

    def __init__(self, command: Sequence[str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=environment()
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=30)
        finally:
            self._log.close()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(LoggedProcess):
    """`corrigo serve` in a child process, waited on until its health check says SERVING."""

    def __init__(
        self, database_url: str, log: Path, extra: Sequence[str] = (), grace: float = 5
    ) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        command = [*CORRIGO, "serve", "--listen", self.target, "--database", database_url]
        super().__init__([*command, "--grace", str(grace), *extra], log)

    def wait_serving(
        self, timeout: float = 30, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            channel = (
                grpc.secure_channel(self.target, credentials)
                if credentials
                else grpc.insecure_channel(self.target)
            )
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
            finally:
                channel.close()
        raise AssertionError(f"server not serving after {timeout}s:\n{self.log()}")


def bootstrapped_server(
    database_url: str, log: Path, prefix: str, extra: Sequence[str] = ()
) -> tuple[ServerProcess, str]:
    """A new organization `prefix-…` in the database and a server on it (with the `corrigo
    serve` arguments `extra`), serving: the server, for the caller to stop, and the
    organization admin's token."""
    org = f"{prefix}-{uuid.uuid4().hex[:8]}"
    token = bootstrap(database_url, org, f"admin@{org}.test")
    server = ServerProcess(database_url, log, extra)
    try:
        server.wait_serving()
    except BaseException:
        # Not serving, it is still a process to end.
        server.stop()
        raise
    return server, token


def scratch_database(backend: str, tmp_path: Path, postgres_url: str) -> str:
    """A database of its own for a test that damages or kills what it runs on: a SQLite
    file, or a new PostgreSQL database beside the test one (drop it with `drop_scratch`)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'scratch.sqlite3'}"
    import psycopg2

    name = f"corrigo_scratch_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    conn.close()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def drop_scratch(url: str, postgres_url: str) -> None:
    if not url.startswith("postgresql://"):
        return
    import psycopg2

    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    conn.close()


class WriteLock:
    """Holds the database's write lock from outside the server, so writes stay in flight."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: sqlite3.Connection | psycopg2.extensions.connection | None = None

    def __enter__(self) -> WriteLock:
        if self.url.startswith("sqlite:///"):
            self.conn = sqlite3.connect(self.url[len("sqlite:///") :], isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg2.connect(self.url)
            self.conn.cursor().execute("LOCK TABLE project IN SHARE MODE")
        return self

    def release(self) -> None:
        if isinstance(self.conn, sqlite3.Connection):
            self.conn.execute("COMMIT")
            self.conn.close()
        elif self.conn is not None:
            self.conn.commit()
            self.conn.close()
        self.conn = None

    def __exit__(self, *exc: object) -> None:
        self.release()
