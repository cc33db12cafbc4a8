"""`corrigo serve --workers 2`: two worker processes answer on one port, each channel on
one of them; a worker killed is replaced while the other answers every call; SIGTERM
drains both; the correction sweep runs on one worker at a time; a second server on the
same port fails at once."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrigo.v1 import admin_pb2, admin_pb2_grpc
from tests.processes import ServerProcess, WriteLock, bootstrap, corrigo, free_port
from tests.reliability import report

pytestmark = pytest.mark.heavy

CHANNELS = 16
# Each channel its own connection (grpc shares one per target in a process by default).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


class Workers(ServerProcess):
    """`corrigo serve --workers 2`, waited on until both workers serve."""

    def __init__(self, url: str, log: Path, *extra: str) -> None:
        # Small pools: the supervisor refuses to start when PostgreSQL (shared by other
        # tests) has fewer free connections than the workers' pools.
        super().__init__(url, log, extra=["--workers", "2", "--db-pool-size", "4", *extra])
        self.wait_serving()
        self.pids = self.wait_workers(2)

    def wait_workers(self, count: int, timeout: float = 60) -> list[int]:
        """The pids of the first `count` workers that said they serve, in order."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [int(p) for p in re.findall(r"worker \d+ serving \(pid (\d+)\)", self.log())]
            if len(pids) >= count:
                return pids[:count]
            time.sleep(0.2)
        raise AssertionError(f"{count} workers not serving after {timeout}s:\n{self.log()}")


def _served(url: str, tmp_path: Path) -> tuple[Workers, str, tuple[tuple[str, str], ...]]:
    """Two workers on a database with an organization: its name and its admin's metadata."""
    org = f"wk-{uuid.uuid4().hex[:8]}"
    token = bootstrap(url, org, f"admin@{org}.test")
    return Workers(url, tmp_path / "workers.log"), org, (("authorization", f"Bearer {token}"),)


def _channels(target: str) -> list[grpc.Channel]:
    return [grpc.insecure_channel(target, options=OWN_CONNECTION) for _ in range(CHANNELS)]


def _answering(channel: grpc.Channel) -> int:
    """The pid of the worker that answered a health check on `channel`."""
    _, call = health_pb2_grpc.HealthStub(channel).Check.with_call(
        health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True
    )
    return int(dict(call.trailing_metadata())["x-corrigo-worker"])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def _value(scraped: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", scraped, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_two_workers_answer_on_one_port_and_one_scrape_shows_both(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    metrics_port = free_port()
    server = Workers(
        scratch_db, tmp_path / "workers.log", "--metrics-listen", f"127.0.0.1:{metrics_port}"
    )
    checks = (
        '{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health",'
        'grpc_type="unary"}'
    )
    try:
        before = _value(_scrape(metrics_port), f"grpc_server_handled_total{checks}")
        channels = _channels(server.target)
        answered = [[_answering(channel) for _ in range(3)] for channel in channels]
        for channel in channels:
            channel.close()
        # A channel is one connection, answered by one worker; the channels reach both.
        assert all(len(set(pids)) == 1 for pids in answered), answered
        assert {pids[0] for pids in answered} == set(server.pids)
        scraped = _scrape(metrics_port)
        after = _value(scraped, f"grpc_server_handled_total{checks}")
        assert after - before == 3 * CHANNELS
        for pid in server.pids:
            assert _value(scraped, f'corrigo_database_up{{pid="{pid}"}}') == 1
    finally:
        assert server.stop() == 0
    report.record("workers", backend, channels=CHANNELS)


def test_a_killed_worker_is_replaced_and_the_other_fails_no_call(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    server, org, auth = _served(scratch_db, tmp_path)
    channels = _channels(server.target)
    try:
        by_worker: dict[int, list[grpc.Channel]] = {}
        for channel in channels:
            by_worker.setdefault(_answering(channel), []).append(channel)
        killed, survivor = server.pids
        assert by_worker.keys() == {killed, survivor}
        stop = threading.Event()
        calls: list[str] = []
        failures: list[grpc.RpcError] = []

        def keep_calling() -> None:
            while not stop.is_set():
                for channel in by_worker[survivor]:
                    try:
                        who = admin_pb2_grpc.AdminServiceStub(channel).WhoAmI(
                            admin_pb2.WhoAmIRequest(), metadata=auth, timeout=10
                        )
                        calls.append(who.organization.name)
                    except grpc.RpcError as error:
                        failures.append(error)

        caller = threading.Thread(target=keep_calling)
        caller.start()
        time.sleep(1)
        os.kill(killed, signal.SIGKILL)
        replacement = server.wait_workers(3)[2]
        time.sleep(1)
        stop.set()
        caller.join()
        assert failures == []
        assert len(calls) > len(by_worker[survivor]) and set(calls) == {org}
        assert replacement not in (killed, survivor)
        # The killed worker's channels reconnect, to the survivor or the replacement.
        assert {_answering(channel) for channel in by_worker[killed]} <= {survivor, replacement}
        fresh = _channels(server.target)
        assert {_answering(channel) for channel in fresh} == {survivor, replacement}
        channels += fresh
        assert f"(pid {killed}) exited with status -9" in server.log()
    finally:
        for channel in channels:
            channel.close()
        assert server.stop() == 0
    report.record("workers", backend, kills=1, calls_during_kill=len(calls))


def test_sigterm_drains_both_workers(scratch_db: str, tmp_path: Path, backend: str) -> None:
    server, _, auth = _served(scratch_db, tmp_path)
    channels = _channels(server.target)
    try:
        one_each = {_answering(channel): channel for channel in channels}
        assert one_each.keys() == set(server.pids)
        with WriteLock(scratch_db) as lock:
            # A write on each worker, held in flight by the lock when SIGTERM comes.
            held = [
                admin_pb2_grpc.AdminServiceStub(channel).CreateProject.future(
                    admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=f"held-{pid}")),
                    metadata=auth,
                    timeout=30,
                )
                for pid, channel in one_each.items()
            ]
            time.sleep(1)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1)
            assert not any(future.done() for future in held)
            lock.release()
            created = sorted(future.result().name for future in held)
        assert created == sorted(f"held-{pid}" for pid in one_each)
        assert server.process.wait(timeout=60) == 0
        log = server.log()
        for pid in server.pids:
            assert f"worker={pid} stopped" in log
        assert log.rstrip().endswith("corrigo.workers stopped")
    finally:
        for channel in channels:
            channel.close()
        server.stop()
    report.record("workers", backend, drained=len(created))


def test_the_sweep_runs_on_one_worker_at_a_time(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    metrics_port = free_port()
    server = Workers(
        scratch_db,
        tmp_path / "workers.log",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--log-level",
        "DEBUG",
    )
    try:
        # The first worker sweeps as it starts and again one interval (15 s) later; the
        # second finds the sweep leased both times. Without the lease: 4 sweeps by then.
        deadline = time.monotonic() + 60
        sweeps = 0.0
        while sweeps < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            sweeps = _value(_scrape(metrics_port), "corrigo_background_sweeps_total")
        time.sleep(3)
        assert _value(_scrape(metrics_port), "corrigo_background_sweeps_total") == 2
        sweepers = re.findall(r"worker=(\d+) sweeping correction sessions", server.log())
        # Both by the worker that took the lease first (the first to start, as a rule).
        assert len(sweepers) == 2 and len(set(sweepers)) == 1
        assert int(sweepers[0]) in server.pids
    finally:
        assert server.stop() == 0
    report.record("workers", backend, sweeps=2)


def test_a_second_server_on_the_port_of_workers_fails_at_once(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    server = Workers(scratch_db, tmp_path / "workers.log")
    try:
        for workers in ("2", "1"):
            started = time.monotonic()
            second = corrigo(
                "serve", "--workers", workers, "--listen", server.target, "--database", scratch_db
            )
            assert second.returncode != 0
            assert f"cannot listen on {server.target} (in use" in second.stderr
            assert time.monotonic() - started < 30
        # Still the first server's two workers, and only them.
        channels = _channels(server.target)
        assert {_answering(channel) for channel in channels} == set(server.pids)
        for channel in channels:
            channel.close()
    finally:
        assert server.stop() == 0


def test_workers_of_a_killed_supervisor_drain_and_end(
    scratch_db: str, tmp_path: Path, backend: str
) -> None:
    server = Workers(scratch_db, tmp_path / "workers.log")
    try:
        server.process.kill()
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() for pid in server.pids):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        log = server.log()
        for pid in server.pids:
            assert f"worker={pid} the supervisor is gone: stopping" in log.replace(
                "corrigo.workers ", ""
            )
            assert f"worker={pid} stopped" in log
    finally:
        server.stop()
