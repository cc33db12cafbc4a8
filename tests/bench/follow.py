"""Follow mode: how soon a change reaches a follower, and whether a follower keeps up with
a bulk sync.

Latency: one follow stream of a small dataset of its own; a writer labels its comments
one at a time, each from sending the UpdateLabelling to the follower's receipt of that
comment (so a figure includes the write's own round trip): through the follower's server
process, and through a second server process on the same database (its commit reaches
the follower by a notice on PostgreSQL, by the 0.5 s poll on SQLite). Keeping up: a
StreamSyncComments of `sizes.sync_comments` new comments into the followed dataset; the
figure is the feed's rate (from the first of them to reach the follower to the last)
over the sync's."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass

import grpc

from corrigo.client import AsyncClient
from corrigo.v1 import datasets_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label
from tests.bench import corpus, measure, raw
from tests.bench.prepare import OWNER, Prepared
from tests.bench.sizes import Sizes
from tests.processes import ServerProcess

# Comments of the latency dataset, and labellings timed through each server.
COMMENTS = 50
_DATASET = "followed"
_SOURCE = "followed-mailbox"


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    samples: int


@dataclass
class Following:
    same_process: Latency
    other_process: Latency
    # Comments the follower received of the bulk sync, and its rate over the sync's.
    feed_comments: int
    feed_ratio: float


class _Follower:
    """A follow stream of the followed dataset, noting when each comment arrives."""

    def __init__(self, client: AsyncClient) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.call = client.datasets.StreamExportDataset(
            datasets_pb2.StreamExportDatasetRequest(
                owner=OWNER, name=_DATASET, follow=True, limit=256
            )
        )
        self.caught_up = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.call:
            now = time.perf_counter()
            for result in message.comments:
                self.arrived[result.comment.uid] = now
            if message.live:
                self.caught_up.set()
            self.changed.set()

    async def arrival(self, uid: str, after: float) -> float:
        """When `uid` arrives after `after` (perf_counter)."""
        while self.arrived.get(uid, 0.0) <= after:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)
        return self.arrived[uid]

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _latency(writer: AsyncClient, follower: _Follower, uids: list[str]) -> Latency:
    took = []
    for number, uid in enumerate(uids * 2):
        # Each round labels every comment again, alternating the sentiment: each a change.
        sentiment = "positive" if number < len(uids) else "negative"
        sent = time.perf_counter()
        await writer.datasets.UpdateLabelling(
            datasets_pb2.UpdateLabellingRequest(
                owner=OWNER,
                name=_DATASET,
                comment_uid=uid,
                assigned=[Label(name="L", sentiment=sentiment)],
            )
        )
        took.append((await follower.arrival(uid, sent)) - sent)
    took.sort()
    return Latency(
        p50_ms=statistics.median(took) * 1000,
        p99_ms=took[min(len(took) - 1, int(len(took) * 0.99))] * 1000,
        samples=len(took),
    )


async def _setup(client: AsyncClient) -> str:
    source = await client.sources.CreateSource(
        sources_pb2.CreateSourceRequest(owner=OWNER, name=_SOURCE, source=sources_pb2.Source())
    )
    await client.datasets.CreateDataset(
        datasets_pb2.CreateDatasetRequest(
            owner=OWNER, name=_DATASET, dataset=datasets_pb2.Dataset(source_ids=[source.source.id])
        )
    )
    await client.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=OWNER, name=_DATASET, label_defs=[datasets_pb2.LabelDef(name="L")]
        )
    )
    await client.sources.SyncComments(
        sources_pb2.SyncCommentsRequest(
            owner=OWNER, name=_SOURCE, comments=list(corpus.comments(COMMENTS, seed=5, prefix="f"))
        )
    )
    return source.source.id


async def _measure(url: str, prepared: Prepared, sizes: Sizes) -> Following:
    client = AsyncClient(prepared.server.target, prepared.token)
    log = prepared.server.log_path.with_name("server-follow-writer.log")
    other = ServerProcess(url, log, grace=2)
    try:
        source_hex = await _setup(client)
        follower = _Follower(client)
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 60)
            uids = sorted(follower.arrived)
            assert all(uid.startswith(source_hex) for uid in uids), uids[:3]
            same = await _latency(client, follower, uids)
            await asyncio.to_thread(other.wait_serving)
            elsewhere = AsyncClient(other.target, prepared.token)
            try:
                across = await _latency(elsewhere, follower, uids)
            finally:
                await elsewhere.close()
            fed, ratio = await _keeping_up(prepared, sizes, follower)
        finally:
            await follower.close()
    finally:
        await client.close()
        await asyncio.to_thread(other.stop)
    return Following(same, across, fed, ratio)


async def _keeping_up(prepared: Prepared, sizes: Sizes, follower: _Follower) -> tuple[int, float]:
    before = len(follower.arrived)
    expected = before + sizes.sync_comments
    synced: list[measure.Ingest] = []
    began = time.perf_counter()

    def sync() -> None:
        with grpc.insecure_channel(prepared.server.target, options=raw.OPTIONS) as channel:
            synced.append(measure.stream_sync(channel, prepared, sizes, _SOURCE))

    thread = threading.Thread(target=sync)
    thread.start()
    try:
        async with asyncio.timeout(600):
            while len(follower.arrived) < expected:
                follower.changed.clear()
                await follower.changed.wait()
    finally:
        await asyncio.to_thread(thread.join)
    fed = sorted(at for at in follower.arrived.values() if at >= began)
    # The feed's rate from its first comment to its last, over the sync's own.
    return len(follower.arrived) - before, synced[0].seconds / (fed[-1] - fed[0])


def following(url: str, prepared: Prepared, sizes: Sizes) -> Following:
    return asyncio.run(_measure(url, prepared, sizes))
