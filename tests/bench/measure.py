"""The figures, each measured against the running server from this (client) process."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families

from corrigo.client.sync import read_comments
from corrigo.v1 import datasets_pb2, improvement_pb2, sources_pb2
from corrigo.v1.comments_pb2 import AssignedLabels
from tests.bench import corpus, raw
from tests.bench.memory import Growth
from tests.bench.prepare import DATASET, OWNER, Prepared
from tests.bench.sizes import Sizes
from tests.processes import CORRIGO, ServerProcess, environment, free_port


@dataclass
class StreamRun:
    comments: int
    messages: int
    seconds: float
    # The continuation of the page before the last (where the flatness run resumes).
    late_continuation: str = ""
    first_page: bytes = b""

    @property
    def rate(self) -> float:
        return self.comments / self.seconds


def stream_export(channel: grpc.Channel, prepared: Prepared, sizes: Sizes) -> StreamRun:
    request = datasets_pb2.StreamExportDatasetRequest(
        owner=OWNER, name=DATASET, limit=sizes.page
    ).SerializeToString()
    began = time.perf_counter()
    run = StreamRun(0, 0, 0.0)
    previous = ""
    for message in raw.stream(channel, raw.STREAM_EXPORT, request, prepared.metadata):
        count, continuation = raw.page_summary(message)
        run.comments += count
        run.messages += 1
        if run.messages == 1:
            run.first_page = message
        if continuation:
            run.late_continuation, previous = previous, continuation
    run.seconds = time.perf_counter() - began
    return run


def stream_with_memory(
    channel: grpc.Channel, prepared: Prepared, sizes: Sizes
) -> tuple[StreamRun, float]:
    with Growth(prepared.server.process.pid) as growth:
        run = stream_export(channel, prepared, sizes)
    return run, growth.mib


def unary_export(channel: grpc.Channel, prepared: Prepared, sizes: Sizes) -> StreamRun:
    """Every page through ExportDataset, one call after the other."""
    request = datasets_pb2.ExportDatasetRequest(owner=OWNER, name=DATASET, limit=sizes.page)
    run = StreamRun(0, 0, 0.0)
    began = time.perf_counter()
    while True:
        answer = raw.unary(channel, raw.EXPORT, request.SerializeToString(), prepared.metadata)
        count, continuation = raw.page_summary(answer)
        run.comments += count
        run.messages += 1
        if not continuation:
            break
        request.continuation = continuation
    run.seconds = time.perf_counter() - began
    return run


@dataclass
class Flatness:
    start_ms: float
    end_ms: float

    @property
    def ratio(self) -> float:
        return self.end_ms / self.start_ms


def flatness(
    channel: grpc.Channel, prepared: Prepared, sizes: Sizes, late_continuation: str
) -> Flatness:
    """Median latency of one unary page at the start of the dataset and near its end
    (the continuation of the page before the last), read in turns."""
    start = datasets_pb2.ExportDatasetRequest(
        owner=OWNER, name=DATASET, limit=sizes.page
    ).SerializeToString()
    end = datasets_pb2.ExportDatasetRequest(
        owner=OWNER, name=DATASET, limit=sizes.page, continuation=late_continuation
    ).SerializeToString()
    timings: dict[bytes, list[float]] = {start: [], end: []}
    for _ in range(2):  # warm up both ends
        for request in timings:
            raw.unary(channel, raw.EXPORT, request, prepared.metadata)
    for _ in range(sizes.flatness_samples):
        for request, spent in timings.items():
            began = time.perf_counter()
            answer = raw.unary(channel, raw.EXPORT, request, prepared.metadata)
            spent.append(time.perf_counter() - began)
            assert raw.page_summary(answer)[0] > 0
    return Flatness(
        statistics.median(timings[start]) * 1000, statistics.median(timings[end]) * 1000
    )


@dataclass
class Load:
    qps: float
    p50_ms: float
    p99_ms: float
    calls: int


async def _load(
    target: str,
    method: str,
    request: bytes,
    metadata: raw.Metadata,
    sizes: Sizes,
    concurrency: int | None = None,
    channels: int = 1,
) -> Load:
    """`sizes.unary_calls` calls of `method`, `concurrency` in flight, spread over
    `channels` channels each with a connection of its own."""
    in_flight = concurrency or sizes.concurrency
    opened = [
        grpc.aio.insecure_channel(target, options=[*raw.OPTIONS, *raw.OWN_CONNECTION])
        for _ in range(channels)
    ]
    try:
        calls = [
            channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            for channel in opened
        ]
        for number in range(in_flight):
            await calls[number % channels](request, metadata=metadata)
        per_worker = sizes.unary_calls // in_flight
        latencies: list[float] = []

        async def worker(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
            for _ in range(per_worker):
                began = time.perf_counter()
                await call(request, metadata=metadata)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker(calls[n % channels]) for n in range(in_flight)))
        seconds = time.perf_counter() - began
    finally:
        for channel in opened:
            await channel.close()
    latencies.sort()
    return Load(
        qps=len(latencies) / seconds,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        calls=len(latencies),
    )


@dataclass
class UnaryRound:
    get_dataset: Load
    health: Load

    @property
    def ratio(self) -> float:
        return self.get_dataset.qps / self.health.qps


def unary_load(prepared: Prepared, sizes: Sizes) -> list[UnaryRound]:
    """GetDataset, then Health/Check, each under `sizes.concurrency` calls in flight, in
    `sizes.ratio_rounds` rounds: the two figures of a ratio are measured side by side,
    so a slow moment of the machine touches both."""
    target = prepared.server.target
    get = datasets_pb2.GetDatasetRequest(owner=OWNER, name=DATASET).SerializeToString()
    health = health_pb2.HealthCheckRequest().SerializeToString()
    return [
        UnaryRound(
            asyncio.run(_load(target, raw.GET_DATASET, get, prepared.metadata, sizes)),
            asyncio.run(_load(target, raw.HEALTH, health, prepared.metadata, sizes)),
        )
        for _ in range(sizes.ratio_rounds)
    ]


@dataclass
class MetricsOverhead:
    """GetDataset under load on a server without metrics and on one with them, in
    rounds side by side; and what the second one's /metrics counted."""

    off_qps: list[float]
    on_qps: list[float]
    # The server process's CPU time per call (user + system), a figure that other load on
    # the machine disturbs far less than the rate.
    off_cpu_us: list[float]
    on_cpu_us: list[float]
    calls: int
    counted: float

    @property
    def ratios(self) -> list[float]:
        return [on / off for on, off in zip(self.on_qps, self.off_qps, strict=True)]

    @property
    def off_rate(self) -> float:
        """Calls per second over every round without metrics (each round makes as many
        calls: the harmonic mean of the rounds' rates)."""
        return statistics.harmonic_mean(self.off_qps)

    @property
    def on_rate(self) -> float:
        return statistics.harmonic_mean(self.on_qps)

    @property
    def ratio(self) -> float:
        """on / off over all rounds: single rounds moved 0.83-1.04 in one run while the
        server's CPU per call moved 2%, so every call counts, not the median round."""
        return self.on_rate / self.off_rate


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _handled_get_dataset(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_method") == "GetDataset"
                and sample.labels.get("grpc_code") == "OK"
            ):
                return float(sample.value)
    return 0.0


def metrics_overhead(prepared: Prepared, url: str, sizes: Sizes) -> MetricsOverhead:
    """The cost of `--metrics-listen`: two new servers on the same database, started
    together, one with metrics and one without; GetDataset QPS on each in turns (which
    goes first alternates per round). Not the prepared server: it has served the whole
    benchmark, and a server's age alone moved its rate by 10% in runs side by side."""
    port = free_port()
    log = prepared.server.log_path
    plain = ServerProcess(url, log.with_name("server-plain.log"), grace=2)
    measured = ServerProcess(
        url,
        log.with_name("server-metrics.log"),
        extra=["--metrics-listen", f"127.0.0.1:{port}"],
        grace=2,
    )
    get = datasets_pb2.GetDatasetRequest(owner=OWNER, name=DATASET).SerializeToString()
    figures: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    calls = 0
    try:
        plain.wait_serving()
        measured.wait_serving()
        for number in range(2 * sizes.ratio_rounds):
            turns = [(plain, False), (measured, True)]
            for server, metrics_on in turns if number % 2 == 0 else reversed(turns):
                began = cpu_seconds(server.process.pid)
                load = asyncio.run(
                    _load(server.target, raw.GET_DATASET, get, prepared.metadata, sizes)
                )
                spent = cpu_seconds(server.process.pid) - began
                qps, cpu_us = figures[metrics_on]
                qps.append(load.qps)
                # _load's warm-up calls, then the measured ones.
                cpu_us.append(spent * 1e6 / (sizes.concurrency + load.calls))
            calls += sizes.concurrency + load.calls
        counted = _handled_get_dataset(port)
    finally:
        measured.stop()
        plain.stop()
    (off, off_cpu), (on, on_cpu) = figures[False], figures[True]
    return MetricsOverhead(off, on, off_cpu, on_cpu, calls, counted)


def median_round(rounds: list[UnaryRound]) -> UnaryRound:
    """The round of the median ratio (the upper one of an even count)."""
    return sorted(rounds, key=lambda r: r.ratio)[len(rounds) // 2]


@dataclass
class Ingest:
    comments: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.comments / self.seconds


def unary_sync(channel: grpc.Channel, prepared: Prepared, sizes: Sizes, source: str) -> Ingest:
    """New comments into `source` through SyncComments, `sizes.sync_batch` a call."""
    made = list(corpus.comments(sizes.sync_comments, seed=2, prefix=source))
    requests = [
        sources_pb2.SyncCommentsRequest(
            owner=OWNER, name=source, comments=made[start : start + sizes.sync_batch]
        ).SerializeToString()
        for start in range(0, len(made), sizes.sync_batch)
    ]
    began = time.perf_counter()
    for request in requests:
        raw.unary(channel, raw.SYNC, request, prepared.metadata)
    return Ingest(len(made), time.perf_counter() - began)


def stream_sync(channel: grpc.Channel, prepared: Prepared, sizes: Sizes, source: str) -> Ingest:
    """New comments into `source` through one StreamSyncComments, `sizes.chunk` a chunk."""
    made = list(corpus.comments(sizes.sync_comments, seed=3, prefix=source))
    chunks = [
        sources_pb2.StreamSyncCommentsRequest(
            owner=OWNER if number == 0 else "",
            name=source if number == 0 else "",
            chunk=number,
            comments=made[start : start + sizes.chunk],
        ).SerializeToString()
        for number, start in enumerate(range(0, len(made), sizes.chunk))
    ]
    began = time.perf_counter()
    acknowledged = raw.stream_sync(channel, chunks, prepared.metadata)
    seconds = time.perf_counter() - began
    return Ingest(len(made) if acknowledged == len(chunks) else 0, seconds)


@dataclass
class Batches:
    sessions: int
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds


def stream_batch(channel: grpc.Channel, prepared: Prepared) -> Batches:
    request = improvement_pb2.StreamBatchSessionsRequest(
        batch_id="benchbatch", limit=100, events_limit=100
    ).SerializeToString()
    sessions = events = 0
    began = time.perf_counter()
    for message in raw.stream(channel, raw.STREAM_BATCH, request, prepared.metadata):
        page = improvement_pb2.GetBatchSessionsResponse.FromString(message)
        sessions += len(page.sessions)
        events += sum(len(s.events) for s in page.sessions)
    return Batches(sessions, events, time.perf_counter() - began)


@dataclass
class LabellingRound:
    update_labelling: Load
    get_dataset: Load

    @property
    def ratio(self) -> float:
        return self.update_labelling.qps / self.get_dataset.qps


def labelling_load(prepared: Prepared, sizes: Sizes, source_hex: str) -> list[LabellingRound]:
    """UpdateLabelling (one comment's two labels), then GetDataset, each with
    `sizes.labelling_concurrency` calls in flight, in `sizes.ratio_rounds` rounds."""
    target = prepared.server.target
    update = datasets_pb2.UpdateLabellingRequest(
        owner=OWNER,
        name=DATASET,
        comment_uid=f"{source_hex}.c0000000",
        assigned=AssignedLabels.FromString(corpus.assigned(0)).assigned,
    ).SerializeToString()
    get = datasets_pb2.GetDatasetRequest(owner=OWNER, name=DATASET).SerializeToString()
    flight = sizes.labelling_concurrency
    return [
        LabellingRound(
            asyncio.run(
                _load(target, raw.UPDATE_LABELLING, update, prepared.metadata, sizes, flight)
            ),
            asyncio.run(_load(target, raw.GET_DATASET, get, prepared.metadata, sizes, flight)),
        )
        for _ in range(sizes.ratio_rounds)
    ]


def stream_labellings(
    channel: grpc.Channel, prepared: Prepared, sizes: Sizes, source_hex: str
) -> Ingest:
    """Every comment of the export dataset labelled through one StreamUpdateLabellings,
    `sizes.chunk` labellings a chunk."""
    chunks = []
    for number, start in enumerate(range(0, sizes.comments, sizes.chunk)):
        stop = min(start + sizes.chunk, sizes.comments)
        chunks.append(
            datasets_pb2.StreamUpdateLabellingsRequest(
                owner=OWNER,
                name=DATASET,
                chunk=number,
                labellings=[
                    datasets_pb2.LabellingUpdate(
                        comment_uid=f"{source_hex}.c{i:07d}",
                        assigned=AssignedLabels.FromString(corpus.assigned(i + 1)).assigned,
                    )
                    for i in range(start, stop)
                ],
            ).SerializeToString()
        )
    began = time.perf_counter()
    acknowledged = raw.stream_sync(channel, chunks, prepared.metadata, raw.STREAM_LABELLINGS)
    seconds = time.perf_counter() - began
    return Ingest(sizes.comments if acknowledged == len(chunks) else 0, seconds)


def stream_sync_file(channel: grpc.Channel, prepared: Prepared, path: Path, source: str) -> Ingest:
    """The comments of a JSONL file (parsed before the clock starts) into `source`
    through one StreamSyncComments, 4,096 a chunk: the server's figure beside `corrigo
    sync` of the same file."""
    made = list(read_comments(path))
    chunks = [
        sources_pb2.StreamSyncCommentsRequest(
            owner=OWNER, name=source, chunk=number, comments=made[start : start + 4096]
        ).SerializeToString()
        for number, start in enumerate(range(0, len(made), 4096))
    ]
    began = time.perf_counter()
    acknowledged = raw.stream_sync(channel, chunks, prepared.metadata)
    seconds = time.perf_counter() - began
    return Ingest(len(made) if acknowledged == len(chunks) else 0, seconds)


def cli(prepared: Prepared, *args: str) -> tuple[float, str]:
    """`corrigo args` as a user runs it against the server: seconds taken, and stderr."""
    env = environment(CORRIGO_TARGET=prepared.server.target, CORRIGO_TOKEN=prepared.token)
    began = time.perf_counter()
    done = subprocess.run(
        [*CORRIGO, *args], capture_output=True, text=True, env=env, check=False, timeout=3600
    )
    seconds = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    return seconds, done.stderr


def _leading_count(stderr: str, after: str) -> int:
    """N of the line `N <after>` that the command prints last."""
    found = re.search(rf"(\d+) {after}", stderr)
    return int(found.group(1)) if found else 0


def cli_export(prepared: Prepared, out: Path, fmt: str) -> Ingest:
    seconds, stderr = cli(
        prepared, "export", f"{OWNER}/{DATASET}", "-o", str(out), "--format", fmt, "-q", "--restart"
    )
    return Ingest(_leading_count(stderr, "comments written"), seconds)


def cli_sync(prepared: Prepared, path: Path, source: str) -> Ingest:
    seconds, stderr = cli(
        prepared, "sync", f"{OWNER}/{source}", str(path), "--chunk-size", "4096", "-q"
    )
    return Ingest(_leading_count(stderr, "new"), seconds)


def cli_labels(prepared: Prepared, path: Path) -> Ingest:
    seconds, stderr = cli(
        prepared, "labels", "import", f"{OWNER}/{DATASET}", str(path), "--chunk-size", "4096", "-q"
    )
    return Ingest(_leading_count(stderr, "labellings set"), seconds)


def cli_batch(prepared: Prepared, out: Path, fmt: str) -> Ingest:
    """`corrigo batch sessions` of the benchmark's batch into a file (as stream_batch
    reads it: 100 sessions a page, 100 events each)."""
    seconds, stderr = cli(prepared, "batch", "sessions", "--batch-id", "benchbatch",
        "--limit", "100", "--events-limit", "100", "-o", str(out), "--format", fmt,
    )  # fmt: skip
    return Ingest(_leading_count(stderr, "sessions written"), seconds)
