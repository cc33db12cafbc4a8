"""Prometheus metrics: the test server's /metrics scraped before and after calls with
known outcomes (go-grpc-prometheus's series and codes, Corrigo's own), and
`corrigo serve --metrics-listen` as processes, each with its own port."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from corrigo.client import Client, CorrigoError
from corrigo.server import config
from corrigo.v1 import admin_pb2, datasets_pb2, sources_pb2
from tests import correction_helpers as ch
from tests import dataset_helpers as h
from tests.conftest import Org, Running
from tests.processes import ServerProcess, bootstrap, free_port

Labels = frozenset[tuple[str, str]]


class Scrape:
    """One scrape of /metrics: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def rpc(self, name: str, kind: str, method: str, **labels: str) -> float:
        service, _, rpc = method.rpartition(".")
        return self.value(name, grpc_type=kind, grpc_service=service, grpc_method=rpc, **labels)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        return str(answer.read().decode())


async def scrape(running: Running) -> Scrape:
    port = running.server.metrics_port
    return Scrape(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))


def delta(before: Scrape, after: Scrape, name: str, kind: str, method: str, **labels: str) -> float:
    return after.rpc(name, kind, method, **labels) - before.rpc(name, kind, method, **labels)


WHOAMI = "corrigo.v1.AdminService.WhoAmI"


async def test_unary_calls_are_counted_with_their_codes(server: Running, org: Org) -> None:
    project = await org.project()
    before = await scrape(server)
    for _ in range(3):
        await org.admin.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    for _ in range(2):
        async with server.client("crg_1_" + "x" * 43) as stranger:
            with pytest.raises(CorrigoError):
                await stranger.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    with pytest.raises(CorrigoError) as invalid:
        await org.admin.admin.CreateProject(admin_pb2.CreateProjectRequest())
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(CorrigoError) as refused:
        await org.admin.sources.ListSources(
            sources_pb2.ListSourcesRequest(owner=project.name, page_token="not-a-token")
        )
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(CorrigoError) as exists:
        await org.admin.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=project.name))
        )
    assert exists.value.code == grpc.StatusCode.ALREADY_EXISTS
    after = await scrape(server)

    def moved(name: str, method: str = WHOAMI, **labels: str) -> float:
        return delta(before, after, name, "unary", method, **labels)

    assert moved("grpc_server_started_total") == 5
    assert moved("grpc_server_handled_total", grpc_code="OK") == 3
    assert moved("grpc_server_handled_total", grpc_code="Unauthenticated") == 2
    assert moved("grpc_server_msg_received_total") == 5
    assert moved("grpc_server_msg_sent_total") == 3
    assert moved("grpc_server_handling_seconds_count") == 5
    assert moved("grpc_server_handling_seconds_bucket", le="+Inf") == 5
    create = "corrigo.v1.AdminService.CreateProject"
    assert moved("grpc_server_handled_total", create, grpc_code="InvalidArgument") == 1
    assert moved("grpc_server_handled_total", create, grpc_code="AlreadyExists") == 1
    sources = "corrigo.v1.SourceService.ListSources"
    assert moved("grpc_server_handled_total", sources, grpc_code="InvalidArgument") == 1
    counter = "corrigo_page_tokens_refused_total"
    assert after.value(counter) - before.value(counter) == 1
    # Both creates rolled back their transaction: the request id's (the client gives every
    # create one), ended by the domain's answer (INVALID_ARGUMENT, and ALREADY_EXISTS for the
    # duplicate project's insert, which failed inside it).
    rolled = "corrigo_database_transactions_rolled_back_total"
    assert after.value(rolled, cause="refused") - before.value(rolled, cause="refused") == 2
    statements = "corrigo_database_statement_seconds_count"
    assert after.value(statements) > before.value(statements)
    kind = "postgresql" if server.db_url.startswith("postgresql") else "sqlite"
    assert after.value("corrigo_build_info", version="0.1.0", database=kind) == 1
    assert after.value("corrigo_database_up") == 1
    assert "_created" not in after.text


async def _chunks(owner: str) -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
    for n in range(3):
        yield sources_pb2.StreamSyncCommentsRequest(
            owner=owner if n == 0 else "",
            name="mailbox" if n == 0 else "",
            chunk=n,
            comments=[h.comment(f"m{n}-{i}", n * 10 + i) for i in range(2)],
        )


async def test_stream_messages_and_comments_are_counted(server: Running, org: Org) -> None:
    project = await org.project()
    source = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [source.id])
    before = await scrape(server)
    acks = [ack async for ack in org.admin.sources.StreamSyncComments(_chunks(project.name))]
    assert len(acks) == 3
    await h.sync(org.admin, project.name, "mailbox", [h.comment("m0-0", 0)])
    pages = [
        page
        async for page in org.admin.datasets.StreamExportDataset(
            datasets_pb2.StreamExportDatasetRequest(owner=project.name, name="ds", limit=4)
        )
    ]
    assert [len(page.comments) for page in pages] == [4, 2]
    after = await scrape(server)

    sync = "corrigo.v1.SourceService.StreamSyncComments"
    assert delta(before, after, "grpc_server_started_total", "bidi_stream", sync) == 1
    assert delta(before, after, "grpc_server_msg_received_total", "bidi_stream", sync) == 3
    assert delta(before, after, "grpc_server_msg_sent_total", "bidi_stream", sync) == 3
    assert (
        delta(before, after, "grpc_server_handled_total", "bidi_stream", sync, grpc_code="OK") == 1
    )
    export = "corrigo.v1.DatasetService.StreamExportDataset"
    assert delta(before, after, "grpc_server_msg_received_total", "server_stream", export) == 1
    assert delta(before, after, "grpc_server_msg_sent_total", "server_stream", export) == 2
    synced = "corrigo_comments_synced_total"
    assert after.value(synced, result="new") - before.value(synced, result="new") == 6
    assert after.value(synced, result="unchanged") - before.value(synced, result="unchanged") == 1
    exported = "corrigo_comments_exported_total"
    assert after.value(exported) - before.value(exported) == 6


async def test_a_cancelled_watch_counts_its_writes_and_ends_canceled(server: Running) -> None:
    watch_method = "grpc.health.v1.Health.Watch"
    before = await scrape(server)

    def canceled(after: Scrape) -> float:
        return delta(
            before,
            after,
            "grpc_server_handled_total",
            "server_stream",
            watch_method,
            grpc_code="Canceled",
        )

    async with grpc.aio.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
    for _ in range(50):  # the server sees the cancellation a moment later
        after = await scrape(server)
        if canceled(after):
            break
        await asyncio.sleep(0.1)
    assert delta(before, after, "grpc_server_started_total", "server_stream", watch_method) == 1
    assert delta(before, after, "grpc_server_msg_sent_total", "server_stream", watch_method) == 1
    assert canceled(after) == 1


async def test_correction_sessions_are_counted_by_status(server: Running, org: Org) -> None:
    made = await ch.corpus(org, 6)
    before = await scrape(server)
    session = await made.create(sample_size=3)
    prepared = await ch.prepared(made, session)
    assert prepared.status == ch.Status.ANNOTATING
    after = await scrape(server)
    name = "corrigo_correction_sessions_total"
    for status in ("CREATED", "SAMPLING", "PREDICTING", "ANNOTATING"):
        assert after.value(name, status=status) - before.value(name, status=status) == 1, status
    # Work ended: no transaction holds a connection, and none waits for one (earlier
    # tests' background work may still be finishing).
    for _ in range(50):
        idle = await scrape(server)
        held = idle.value("corrigo_database_connections_in_use")
        if held == 0 and idle.value("corrigo_database_connections_waiting") == 0:
            break
        await asyncio.sleep(0.1)
    assert held == 0


def test_metrics_listen_reads_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRIGO_METRICS_LISTEN", "127.0.0.1:9464")
    parser = config.argparse.ArgumentParser()
    config.add_arguments(parser)
    assert config.from_arguments(parser.parse_args([])).metrics_listen == "127.0.0.1:9464"
    monkeypatch.delenv("CORRIGO_METRICS_LISTEN")
    parser = config.argparse.ArgumentParser()
    config.add_arguments(parser)
    assert config.from_arguments(parser.parse_args([])).metrics_listen is None
    assert config.split_listen("[::1]:9464") == ("::1", 9464)
    assert config.split_listen(":9464") == ("0.0.0.0", 9464)
    with pytest.raises(ValueError):
        config.split_listen("9464")


@pytest.fixture
def process_db(backend: str, db_url: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'process.sqlite3'}" if backend == "sqlite" else db_url


def test_server_processes_on_one_host_each_serve_their_own(process_db: str, tmp_path: Path) -> None:
    org = f"metrics-{uuid.uuid4().hex[:8]}"
    token = bootstrap(process_db, org, f"admin@{org}.test")
    ports = [free_port(), free_port()]
    servers = [
        ServerProcess(
            process_db, tmp_path / f"server-{n}.log", extra=["--metrics-listen", f"127.0.0.1:{p}"]
        )
        for n, p in enumerate(ports)
    ]
    try:
        for server in servers:
            server.wait_serving()
        for calls, server in zip((2, 1), servers, strict=True):
            with Client(server.target, token) as client:
                for _ in range(calls):
                    client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
        scrapes = [Scrape(_get(f"http://127.0.0.1:{port}/metrics")) for port in ports]
    finally:
        for server in servers:
            server.stop()
    handled = [s.rpc("grpc_server_handled_total", "unary", WHOAMI, grpc_code="OK") for s in scrapes]
    assert handled == [2, 1]
    for found in scrapes:
        assert found.value("process_resident_memory_bytes") > 0
