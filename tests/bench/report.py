"""The results table, and the smoke run's sanity checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tests.bench import raw
from tests.bench.sizes import Sizes

Row = tuple[str, Callable[[dict[str, Any]], str], str]


def _n(value: float) -> str:
    return f"{value:,.0f}"


ROWS: list[Row] = [
    (
        "streaming export, median round (comments/s)",
        lambda f: _n(f["export_stream_cps"]),
        "reported",
    ),
    ("bare-driver limit, same round (comments/s)", lambda f: _n(f["export_limit_cps"]), "reported"),
    (
        "export / limit, median of rounds",
        lambda f: f"{f['export_ratio']:.2f}",
        ">= 0.8 / 1.5",
    ),
    ("unary export, all pages (comments/s)", lambda f: _n(f["export_unary_cps"]), "reported"),
    ("unary / stream", lambda f: f"{f['unary_vs_stream']:.2f}", "reported"),
    (
        "page at start / at end (ms)",
        lambda f: f"{f['page_start_ms']:.1f} / {f['page_end_ms']:.1f}",
        "reported",
    ),
    ("keyset flatness (end / start)", lambda f: f"{f['flatness_ratio']:.2f}", "<= 1.5"),
    (
        "GetDataset QPS, 64 in flight, median round (p50 / p99 ms)",
        lambda f: (
            f"{_n(f['get_dataset']['qps'])} ({f['get_dataset']['p50_ms']:.1f} / "
            f"{f['get_dataset']['p99_ms']:.1f})"
        ),
        "reported",
    ),
    ("Health/Check QPS, same round", lambda f: _n(f["health"]["qps"]), "reported"),
    ("GetDataset / Health, median of rounds", lambda f: f"{f['unary_ratio']:.2f}", ">= 0.6"),
    (
        "GetDataset QPS, metrics off / on, all rounds",
        lambda f: f"{_n(f['metrics_off_qps'])} / {_n(f['metrics_on_qps'])}",
        "reported",
    ),
    (
        "GetDataset metrics on / off, all rounds",
        lambda f: f"{f['metrics_on_off_ratio']:.2f}",
        ">= 0.95",
    ),
    (
        "GetDataset server CPU per call, metrics off / on (us)",
        lambda f: f"{f['metrics_off_cpu_us_per_call']:.0f} / {f['metrics_on_cpu_us_per_call']:.0f}",
        "reported",
    ),
    (
        "4 streamed exports at once, --workers 1 / 2, median round (comments/s)",
        lambda f: f"{_n(f['workers_1_export_cps'])} / {_n(f['workers_2_export_cps'])}",
        "reported",
    ),
    (
        "4 exports at once, workers 2 / workers 1, median of rounds",
        lambda f: f"{f['workers_export_ratio']:.2f}",
        ">= 1.4",
    ),
    (
        "GetDataset QPS, 64 in flight over 4 channels, --workers 1 / 2",
        lambda f: f"{_n(f['workers_1_get_dataset_qps'])} / {_n(f['workers_2_get_dataset_qps'])}",
        "reported",
    ),
    (
        "GetDataset QPS, workers 2 / workers 1, median of rounds",
        lambda f: f"{f['workers_get_dataset_ratio']:.2f}",
        "reported",
    ),
    ("SyncComments, 1,000 a call (comments/s)", lambda f: _n(f["ingest_sync_cps"]), ">= 20,000"),
    (
        "StreamSyncComments, 4,096 a chunk (comments/s)",
        lambda f: _n(f["ingest_stream_cps"]),
        ">= 20,000",
    ),
    (
        "StreamSyncComments loading the dataset (comments/s)",
        lambda f: _n(f["load_stream_cps"]),
        "reported",
    ),
    (
        "UploadPredictions loading the dataset, 4,096 a call (predictions/s)",
        lambda f: _n(f["upload_predictions_ps"]),
        "reported",
    ),
    ("server RSS growth, whole stream (MiB)", lambda f: f"{f['memory_growth_mib']:.1f}", "<= 64"),
    ("StreamBatchSessions (sessions/s)", lambda f: _n(f["batch_sessions_ps"]), "reported"),
    (
        "corrigo export JSONL (comments/s; / stream beside it)",
        lambda f: f"{_n(f['cli_export_jsonl_cps'])} ({f['cli_export_jsonl_ratio']:.2f})",
        ">= 60,000",
    ),
    (
        "corrigo export Parquet (comments/s; / stream beside it)",
        lambda f: f"{_n(f['cli_export_parquet_cps'])} ({f['cli_export_parquet_ratio']:.2f})",
        "reported",
    ),
    ("corrigo export CSV (comments/s)", lambda f: _n(f["cli_export_csv_cps"]), "reported"),
    (
        "corrigo batch sessions to JSONL (sessions/s; / stream beside it)",
        lambda f: f"{_n(f['cli_batch_jsonl_ps'])} ({f['cli_batch_jsonl_ratio']:.2f})",
        "reported",
    ),
    (
        "corrigo batch sessions to Parquet (sessions/s; / stream beside it)",
        lambda f: f"{_n(f['cli_batch_parquet_ps'])} ({f['cli_batch_parquet_ratio']:.2f})",
        "reported",
    ),
    (
        "corrigo sync (comments/s; / StreamSyncComments of the file)",
        lambda f: f"{_n(f['cli_sync_cps'])} ({f['cli_sync_ratio']:.2f})",
        "ratio >= 0.8",
    ),
    (
        "StreamUpdateLabellings, 4,096 a chunk (labellings/s)",
        lambda f: _n(f["cli_labels_server_lps"]),
        ">= 20,000",
    ),
    (
        "corrigo labels import (labellings/s; / the stream)",
        lambda f: f"{_n(f['cli_labels_lps'])} ({f['cli_labels_ratio']:.2f})",
        "reported",
    ),
    (
        "UpdateLabelling / GetDataset calls/s, 32 in flight",
        lambda f: (
            f"{_n(f['update_labelling']['qps'])} / {_n(f['labelling_get_dataset']['qps'])} "
            f"({f['update_labelling_ratio']:.2f})"
        ),
        "reported",
    ),
    (
        "follow: write to receipt, same process (ms, p50 / p99)",
        lambda f: f"{f['follow_same_p50_ms']:.1f} / {f['follow_same_p99_ms']:.1f}",
        "p99 < 100",
    ),
    (
        "follow: write to receipt, another process (ms, p50 / p99)",
        lambda f: f"{f['follow_other_p50_ms']:.1f} / {f['follow_other_p99_ms']:.1f}",
        "p99 < 100 (PostgreSQL), < 1,000 (SQLite)",
    ),
    (
        "follow: feed rate / StreamSyncComments rate",
        lambda f: f"{f['follow_feed_ratio']:.2f}",
        ">= 1",
    ),
]


def table(results: dict[str, Any]) -> str:
    backends = list(results["backends"])
    header = ["figure", *backends, "target"]
    lines = [header]
    for title, show, target in ROWS:
        lines.append([title, *(show(results["backends"][b]) for b in backends), target])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(line: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"

    out = [render(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [render(line) for line in lines[1:]]
    machine = results["machine"]
    sizes = results["sizes"]
    out.append("")
    out.append(
        f"{machine['date']}; {machine['nproc']} cores, {machine['cpu']}, "
        f"{machine['memory_gib']} GiB; Python {machine['python']}, SQLite {machine['sqlite']}"
        + (f", PostgreSQL {machine['postgres']}" if machine["postgres"] else "")
        + f"; BENCH_SCALE={sizes['scale']} ({sizes['comments']:,} comments)"
    )
    return "\n".join(out)


def _comment_fields(page: bytes) -> list[bytes]:
    return [bytes(value) for number, value in raw.fields(page) if number == 1]


def same_comments(server_page: bytes, limit_page: bytes) -> bool:
    """Whether two first pages hold the very same serialized comments (their
    continuations differ: each is encrypted with a fresh nonce)."""
    return _comment_fields(server_page) == _comment_fields(limit_page)


def _numbers(value: Any, where: str) -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [n for key, v in value.items() for n in _numbers(v, f"{where}.{key}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{where}[{i}]")]
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [(where, float(value))]
    return []


def problems(results: dict[str, Any], sizes: Sizes) -> list[str]:
    """What is not sane: a figure that is not a finite number above zero (memory growth:
    not below zero), a run that did not read every comment or session, pages that
    differ from the limit's."""
    found = []
    for name, figures in results["backends"].items():
        for where, value in _numbers(figures, name):
            # Memory may not grow at all; every other figure is a count, a time or a rate.
            least_ok = 0.0 if where.endswith(".memory_growth_mib") else math.ulp(0.0)
            if not (math.isfinite(value) and value >= least_ok):
                found.append(f"{where} = {value}: not a finite number in range")
        for count in figures["export_comments"]:
            if count != sizes.comments:
                found.append(f"{name}: an export read {count} of {sizes.comments} comments")
        for count in figures["workers_export_comments"]:
            if count != sizes.comments:
                found.append(f"{name}: an export beside others read {count} of {sizes.comments}")
        if figures["export_unary_comments"] != sizes.comments:
            found.append(f"{name}: the unary export read {figures['export_unary_comments']}")
        for kind in ("sync", "stream"):
            for count in figures[f"ingest_{kind}_comments"]:
                if count != sizes.sync_comments:
                    found.append(f"{name}: an ingest run ({kind}) synced {count} comments")
        for count, events in zip(figures["batch_sessions"], figures["batch_events"], strict=True):
            if count != sizes.sessions or events != sizes.sessions * sizes.events:
                found.append(f"{name}: a batch stream read {count} sessions, {events} events")
        if figures["follow_feed_comments"] != sizes.sync_comments:
            found.append(
                f"{name}: a follower received {figures['follow_feed_comments']} of "
                f"{sizes.sync_comments} comments synced"
            )
        if figures["metrics_counted_calls"] != figures["metrics_calls"]:
            found.append(
                f"{name}: /metrics counted {figures['metrics_counted_calls']} GetDataset calls "
                f"of {figures['metrics_calls']}"
            )
        for figure in (
            "cli_export_jsonl",
            "cli_export_parquet",
            "cli_export_csv",
            "cli_sync",
            "cli_labels",
        ):
            for count in figures[f"{figure}_comments"]:
                if count != sizes.comments:
                    found.append(f"{name}: a {figure} run handled {count} of {sizes.comments}")
        for fmt in ("jsonl", "parquet"):
            for count in figures[f"cli_batch_{fmt}_comments"]:
                if count != sizes.sessions:
                    found.append(f"{name}: corrigo batch sessions ({fmt}) wrote {count}")
        if not figures["limit_page_matches"]:
            found.append(f"{name}: the limit's first page differs from the server's")
    return found
