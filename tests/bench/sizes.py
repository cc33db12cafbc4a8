"""The benchmark's sizes, scaled by BENCH_SCALE (1.0 = the issue's sizes)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    scale: float
    # The export dataset: comments, each with 2 messages, 2 labels and 2 predictions.
    comments: int
    # Comments per message of the streaming export (the export's maximum page).
    page: int
    # Unary SyncComments: comments synced in calls of `sync_batch`.
    sync_comments: int
    sync_batch: int
    # Bulk sync chunk (the most one chunk may hold).
    chunk: int
    # Unary RPC load: calls in flight at once, and calls per measured run.
    concurrency: int
    # UpdateLabelling's load (beside GetDataset's): calls in flight at once.
    labelling_concurrency: int
    unary_calls: int
    # Keyset flatness: page reads timed at each end.
    flatness_samples: int
    # Improvement batch: sessions with `events` events each.
    sessions: int
    events: int
    # Repeats of each throughput run (the best is kept: the machine is shared).
    repeats: int
    # Rounds of a ratio's two runs side by side (the median round's ratio is the figure).
    ratio_rounds: int


def _scaled(value: int, scale: float, minimum: int) -> int:
    return max(minimum, int(value * scale))


def from_environment() -> Sizes:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    if not 0 < scale <= 10:
        raise SystemExit(f"BENCH_SCALE must be in (0, 10], got {scale}")
    return Sizes(
        scale=scale,
        comments=_scaled(200_000, scale, 600),
        page=256,
        sync_comments=_scaled(50_000, scale, 2_000),
        sync_batch=1_000,
        chunk=4_096,
        concurrency=64,
        labelling_concurrency=32,
        unary_calls=_scaled(6_400, scale, 640),
        flatness_samples=_scaled(40, scale, 8),
        sessions=_scaled(1_000, scale, 30),
        events=100,
        repeats=3 if scale >= 0.1 else 1,
        ratio_rounds=5 if scale >= 0.1 else 1,
    )
