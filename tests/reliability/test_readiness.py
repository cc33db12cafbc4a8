"""Readiness follows the database: with PostgreSQL stopped, each corrigo.v1 service of a
running server turns NOT_SERVING (the overall status, liveness, stays SERVING), and
SERVING again once it is back. Heavy: it stops the machine's PostgreSQL for a few
seconds (other suites on it fail meanwhile), so `make reliability` runs it."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.processes import ServerProcess, bootstrap

SERVICE = "corrigo.v1.AdminService"
CLUSTER = ["15", "main"]


def _cluster(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *CLUSTER, action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _status(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return int(answer.status)


def _wait_for(target: str, service: str, status: int, timeout: float) -> float:
    """Seconds until `service` reports `status` (fails after `timeout`)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if _status(target, service) == status:
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"{service or 'overall'} not {status} after {timeout}s")


@pytest.mark.heavy
@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="no pg_ctlcluster here")
def test_services_follow_the_database(backend: str, db_url: str, tmp_path: Path) -> None:
    if backend != "postgres":
        pytest.skip("stops and starts PostgreSQL")
    org = f"ready-{uuid.uuid4().hex[:8]}"
    bootstrap(db_url, org, f"admin@{org}.test")
    server = ServerProcess(db_url, tmp_path / "server.log", extra=["--readiness-interval", "0.3"])
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    try:
        server.wait_serving()
        assert _status(server.target, SERVICE) == serving
        _cluster("stop")
        try:
            _wait_for(server.target, SERVICE, not_serving, 8)
            assert _status(server.target, "") == serving
        finally:
            _cluster("start")
        _wait_for(server.target, SERVICE, serving, 20)
        # The overall status never changed: liveness does not follow the database.
        assert _status(server.target, "") == serving
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "the database does not answer: services are NOT_SERVING" in log
    assert "the database answers again: services are SERVING" in log
