"""What a second core buys: two new servers on the prepared database, one `--workers 1`
and one `--workers 2`, measured in turns (which goes first alternates per round): 4
streamed exports of the whole dataset at once, by 4 clients each with its own channel
(so its own connection, which the kernel gives to one worker), and GetDataset with 64
calls in flight over 4 such channels. The figures are the rounds' median ratios, workers
2 / workers 1. The kernel places connections, not calls: a round whose 4 channels all
landed on one worker counts as it came."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from corrigo.v1 import datasets_pb2
from tests.bench import raw
from tests.bench.measure import _load, stream_export
from tests.bench.prepare import DATASET, OWNER, Prepared
from tests.bench.sizes import Sizes
from tests.processes import ServerProcess

CLIENTS = 4
WORKERS = (1, 2)
# Connections per worker: 64 calls in flight wait on none, and 3 such pools (this module's
# two servers) leave room on a PostgreSQL shared with others.
POOL = 8


@dataclass
class Scaling:
    """Per number of workers: each round's export rate (comments/s, the 4 exports
    together) and GetDataset QPS; every export's comment count."""

    export_cps: dict[int, list[float]] = field(default_factory=dict)
    get_dataset_qps: dict[int, list[float]] = field(default_factory=dict)
    export_comments: list[int] = field(default_factory=list)

    def ratios(self, runs: dict[int, list[float]]) -> list[float]:
        return [two / one for one, two in zip(runs[1], runs[2], strict=True)]

    def median(self, runs: dict[int, list[float]], workers: int) -> float:
        return statistics.median(runs[workers])


def _started(url: str, prepared: Prepared, workers: int) -> ServerProcess:
    log = prepared.server.log_path.with_name(f"server-workers-{workers}.log")
    extra = ["--workers", str(workers), "--db-pool-size", str(POOL)]
    server = ServerProcess(url, log, extra=extra, grace=2)
    server.wait_serving()
    deadline = time.monotonic() + 60
    while workers > 1 and not re.search(rf"worker {workers} serving", server.log()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{workers} workers not serving:\n{server.log()}")
        time.sleep(0.2)
    return server


def _exports(server: ServerProcess, prepared: Prepared, sizes: Sizes) -> tuple[float, list[int]]:
    """The 4 exports at once, each in a thread with its own channel; their joint rate."""
    channels = [
        grpc.insecure_channel(server.target, options=[*raw.OPTIONS, *raw.OWN_CONNECTION])
        for _ in range(CLIENTS)
    ]
    try:
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=30)
        with ThreadPoolExecutor(CLIENTS) as pool:
            began = time.perf_counter()
            runs = list(pool.map(lambda c: stream_export(c, prepared, sizes), channels))
            seconds = time.perf_counter() - began
    finally:
        for channel in channels:
            channel.close()
    counts = [run.comments for run in runs]
    return sum(counts) / seconds, counts


def scaling(prepared: Prepared, url: str, sizes: Sizes) -> Scaling:
    # The supervisor checks PostgreSQL's free connections before the other server opens any.
    servers = {workers: _started(url, prepared, workers) for workers in reversed(WORKERS)}
    get = datasets_pb2.GetDatasetRequest(owner=OWNER, name=DATASET).SerializeToString()
    figures = Scaling({w: [] for w in WORKERS}, {w: [] for w in WORKERS})
    try:
        for number in range(sizes.ratio_rounds):
            turns = WORKERS if number % 2 == 0 else WORKERS[::-1]
            for workers in turns:
                rate, counts = _exports(servers[workers], prepared, sizes)
                figures.export_cps[workers].append(rate)
                figures.export_comments += counts
            for workers in turns:
                load = asyncio.run(
                    _load(
                        servers[workers].target,
                        raw.GET_DATASET,
                        get,
                        prepared.metadata,
                        sizes,
                        channels=CLIENTS,
                    )
                )
                figures.get_dataset_qps[workers].append(load.qps)
    finally:
        for server in servers.values():
            server.stop()
    return figures
