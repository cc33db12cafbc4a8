"""`python -m tests.bench [--check] [--backend sqlite|postgres]`: every figure of the
benchmark, for SQLite and (when CORRIGO_BENCH_POSTGRES_URL is set) PostgreSQL.

Prints a table and writes `.build/bench/results.json`. With `--check` (the smoke run,
`make bench-smoke`) it then asserts that every figure is sane: positive, finite, every
comment and session read. It never asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import grpc

from corrigo.v1 import sources_pb2
from tests.bench import follow, limit, machine, measure, prepare, raw, report, workers
from tests.bench.sizes import Sizes, from_environment

OUT = Path(".build/bench")


def run_backend(name: str, url: str, sizes: Sizes) -> dict[str, Any]:
    workdir = OUT / name
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] loading {sizes.comments} comments ...", flush=True)
    prepared = prepare.start(url, sizes, workdir)
    try:
        return _figures(name, url, sizes, prepared)
    finally:
        code = prepared.server.stop()
        if code != 0:
            print(f"[{name}] server exited with {code}; log: {prepared.server.log_path}")


def _figures(name: str, url: str, sizes: Sizes, prepared: prepare.Prepared) -> dict[str, Any]:
    figures: dict[str, Any] = {"setup_seconds": prepared.timings}
    figures["load_stream_cps"] = prepared.stream_sync_rate
    figures["upload_predictions_ps"] = sizes.comments / prepared.timings["upload_predictions_s"]
    source_hex, dataset_hex = _hex_ids(prepared)
    with grpc.insecure_channel(prepared.server.target, options=raw.OPTIONS) as channel:
        print(f"[{name}] streaming export against the bare-driver limit ...", flush=True)
        warm = limit.run(url, source_hex, dataset_hex, sizes.page)
        first, growth = measure.stream_with_memory(channel, prepared, sizes)
        # Rounds of (limit, stream) in turns, after the warm-up pair above: the figure is
        # the round of the median ratio.
        rounds = []
        for _ in range(sizes.ratio_rounds):
            bare = limit.run(url, source_hex, dataset_hex, sizes.page)
            rounds.append((measure.stream_export(channel, prepared, sizes), bare))
        rounds.sort(key=lambda r: r[0].rate / r[1].rate)
        stream, bare = rounds[len(rounds) // 2]
        figures["export_stream_cps"] = stream.rate
        figures["export_limit_cps"] = bare.rate
        figures["export_ratio"] = stream.rate / bare.rate
        figures["export_ratio_runs"] = [s.rate / b.rate for s, b in rounds]
        figures["export_stream_runs_cps"] = [s.rate for s, _ in rounds]
        figures["export_limit_runs_cps"] = [b.rate for _, b in rounds]
        figures["export_best_to_best"] = max(s.rate for s, _ in rounds) / max(
            b.rate for _, b in rounds
        )
        figures["export_comments"] = [first.comments, warm.comments] + [
            run.comments for pair in rounds for run in pair
        ]
        figures["export_messages"] = first.messages
        figures["memory_growth_mib"] = growth
        figures["limit_page_matches"] = report.same_comments(first.first_page, warm.first_page)

        print(f"[{name}] unary export, keyset flatness ...", flush=True)
        unary = measure.unary_export(channel, prepared, sizes)
        figures["export_unary_cps"] = unary.rate
        figures["export_unary_comments"] = unary.comments
        figures["unary_vs_stream"] = unary.rate / figures["export_stream_cps"]
        flat = measure.flatness(channel, prepared, sizes, first.late_continuation)
        figures["page_start_ms"] = flat.start_ms
        figures["page_end_ms"] = flat.end_ms
        figures["flatness_ratio"] = flat.ratio

        print(f"[{name}] unary RPCs under load ...", flush=True)
        rounds = measure.unary_load(prepared, sizes)
        middle = measure.median_round(rounds)
        figures["get_dataset"] = middle.get_dataset.__dict__
        figures["health"] = middle.health.__dict__
        figures["unary_ratio"] = middle.ratio
        figures["unary_ratio_runs"] = [r.ratio for r in rounds]

        print(f"[{name}] GetDataset with metrics off and on ...", flush=True)
        overhead = measure.metrics_overhead(prepared, url, sizes)
        figures["metrics_off_qps_runs"] = overhead.off_qps
        figures["metrics_on_qps_runs"] = overhead.on_qps
        figures["metrics_off_cpu_us_per_call"] = statistics.median(overhead.off_cpu_us)
        figures["metrics_on_cpu_us_per_call"] = statistics.median(overhead.on_cpu_us)
        figures["metrics_off_qps"] = overhead.off_rate
        figures["metrics_on_qps"] = overhead.on_rate
        figures["metrics_on_off_ratio"] = overhead.ratio
        figures["metrics_on_off_ratio_runs"] = overhead.ratios
        figures["metrics_calls"] = overhead.calls
        figures["metrics_counted_calls"] = overhead.counted

        print(
            f"[{name}] --workers 1 and --workers 2: 4 exports at once, GetDataset ...", flush=True
        )
        scaling = workers.scaling(prepared, url, sizes)
        for key, runs in (("export", scaling.export_cps), ("get_dataset", scaling.get_dataset_qps)):
            unit = "cps" if key == "export" else "qps"
            for count in workers.WORKERS:
                figures[f"workers_{count}_{key}_{unit}"] = scaling.median(runs, count)
                figures[f"workers_{count}_{key}_runs_{unit}"] = runs[count]
            figures[f"workers_{key}_ratio"] = statistics.median(scaling.ratios(runs))
            figures[f"workers_{key}_ratio_runs"] = scaling.ratios(runs)
        figures["workers_export_comments"] = scaling.export_comments

        print(f"[{name}] ingest, batches ...", flush=True)
        syncs = []
        for run in range(sizes.repeats):  # each into a new source: every comment is new
            _create_source(channel, prepared, f"ingest-{run}")
            syncs.append(measure.unary_sync(channel, prepared, sizes, f"ingest-{run}"))
        figures["ingest_sync_cps"] = max(s.rate for s in syncs)
        figures["ingest_sync_runs_cps"] = [s.rate for s in syncs]
        figures["ingest_sync_comments"] = [s.comments for s in syncs]
        streams = []
        for run in range(sizes.repeats):
            _create_source(channel, prepared, f"bulk-{run}")
            streams.append(measure.stream_sync(channel, prepared, sizes, f"bulk-{run}"))
        figures["ingest_stream_cps"] = max(s.rate for s in streams)
        figures["ingest_stream_runs_cps"] = [s.rate for s in streams]
        figures["ingest_stream_comments"] = [s.comments for s in streams]
        batches = [measure.stream_batch(channel, prepared) for _ in range(sizes.repeats)]
        figures["batch_sessions_ps"] = max(b.rate for b in batches)
        figures["batch_sessions"] = [b.sessions for b in batches]
        figures["batch_events"] = [b.events for b in batches]
        _command_line(name, channel, sizes, prepared, source_hex, figures)
    print(f"[{name}] follow mode: latency, and a follower beside a bulk sync ...", flush=True)
    followed = follow.following(url, prepared, sizes)
    for where, latency in (("same", followed.same_process), ("other", followed.other_process)):
        figures[f"follow_{where}_p50_ms"] = latency.p50_ms
        figures[f"follow_{where}_p99_ms"] = latency.p99_ms
    figures["follow_feed_comments"] = followed.feed_comments
    figures["follow_feed_ratio"] = followed.feed_ratio
    return figures


def _command_line(
    name: str,
    channel: grpc.Channel,
    sizes: Sizes,
    prepared: prepare.Prepared,
    source_hex: str,
    figures: dict[str, Any],
) -> None:
    """The `corrigo` commands beside the server figure each stands for, measured in turns
    (server, command) so that a slow moment of the machine touches both; the best of
    each is kept, and their ratio."""
    workdir = OUT / name
    print(f"[{name}] corrigo export (JSONL, Parquet, CSV) beside the stream ...", flush=True)
    jsonl = workdir / "cli-export.jsonl"
    pairs = []
    for _ in range(sizes.repeats):
        stream = measure.stream_export(channel, prepared, sizes)
        pairs.append((stream, measure.cli_export(prepared, jsonl, "jsonl")))
    _pair_figures(figures, "cli_export_jsonl", "export_stream", pairs)
    pairs = []
    for _ in range(sizes.repeats):
        stream = measure.stream_export(channel, prepared, sizes)
        pairs.append((stream, measure.cli_export(prepared, workdir / "cli.parquet", "parquet")))
    _pair_figures(figures, "cli_export_parquet", "export_stream", pairs)
    csv_run = measure.cli_export(prepared, workdir / "cli-export.csv", "csv")
    figures["cli_export_csv_cps"] = csv_run.rate
    figures["cli_export_csv_comments"] = [csv_run.comments]

    print(f"[{name}] corrigo batch sessions (JSONL, Parquet) beside the stream ...", flush=True)
    for fmt in ("jsonl", "parquet"):
        batch_pairs = [
            (
                measure.stream_batch(channel, prepared),
                measure.cli_batch(prepared, workdir / f"batch.{fmt}", fmt),
            )
            for _ in range(sizes.repeats)
        ]
        best_stream = max(b.rate for b, _ in batch_pairs)
        figures[f"cli_batch_{fmt}_ps"] = max(c.rate for _, c in batch_pairs)
        figures[f"cli_batch_{fmt}_ratio"] = figures[f"cli_batch_{fmt}_ps"] / best_stream
        figures[f"cli_batch_{fmt}_comments"] = [c.comments for _, c in batch_pairs]

    print(f"[{name}] corrigo sync beside StreamSyncComments of the same file ...", flush=True)
    pairs = []
    for run in range(sizes.repeats):
        _create_source(channel, prepared, f"file-sync-{run}")
        server = measure.stream_sync_file(channel, prepared, jsonl, f"file-sync-{run}")
        _create_source(channel, prepared, f"cli-sync-{run}")
        pairs.append((server, measure.cli_sync(prepared, jsonl, f"cli-sync-{run}")))
    _pair_figures(figures, "cli_sync", "file_sync", pairs)

    print(f"[{name}] bulk labelling, UpdateLabelling under load ...", flush=True)
    pairs = []
    for _ in range(sizes.repeats):
        server = measure.stream_labellings(channel, prepared, sizes, source_hex)
        pairs.append((server, measure.cli_labels(prepared, jsonl)))
    _pair_figures(figures, "cli_labels", "stream_labellings", pairs, unit="lps")
    rounds = measure.labelling_load(prepared, sizes, source_hex)
    middle = sorted(rounds, key=lambda r: r.ratio)[len(rounds) // 2]
    figures["update_labelling"] = middle.update_labelling.__dict__
    figures["labelling_get_dataset"] = middle.get_dataset.__dict__
    figures["update_labelling_ratio"] = middle.ratio


def _pair_figures(
    figures: dict[str, Any],
    command: str,
    server: str,
    pairs: list[tuple[measure.Ingest | measure.StreamRun, measure.Ingest]],
    unit: str = "cps",
) -> None:
    """`command`'s best rate, the server's best beside it, their ratio, and every count
    (for the smoke run's checks)."""
    best_server = max(s.rate for s, _ in pairs)
    best_command = max(c.rate for _, c in pairs)
    figures[f"{command}_{unit}"] = best_command
    figures[f"{command}_server_{unit}"] = best_server
    figures[f"{command}_ratio"] = best_command / best_server
    figures[f"{command}_comments"] = [run.comments for pair in pairs for run in pair]


def _hex_ids(prepared: prepare.Prepared) -> tuple[str, str]:
    from corrigo.client import Client
    from corrigo.v1 import datasets_pb2

    with Client(prepared.server.target, prepared.token) as client:
        dataset = client.datasets.GetDataset(
            datasets_pb2.GetDatasetRequest(owner=prepare.OWNER, name=prepare.DATASET)
        ).dataset
    return dataset.source_ids[0], dataset.id


def _create_source(channel: grpc.Channel, prepared: prepare.Prepared, name: str) -> None:
    from corrigo.client import Client

    with Client(prepared.server.target, prepared.token) as client:
        client.sources.CreateSource(
            sources_pb2.CreateSourceRequest(
                owner=prepare.OWNER, name=name, source=sources_pb2.Source()
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--check", action="store_true", help="assert the figures are sane")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    args = parser.parse_args(argv)
    sizes = from_environment()
    backends = {"sqlite": f"sqlite:///{(OUT / 'sqlite' / 'bench.sqlite3').resolve()}"}
    postgres = os.environ.get("CORRIGO_BENCH_POSTGRES_URL", "")
    if postgres:
        backends["postgres"] = postgres
    chosen = args.backend or list(backends)
    missing = [b for b in chosen if b not in backends]
    if missing:
        raise SystemExit("--backend postgres needs CORRIGO_BENCH_POSTGRES_URL")
    results: dict[str, Any] = {
        "machine": machine.describe(postgres if "postgres" in chosen else None),
        "sizes": sizes.__dict__,
        "backends": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        results["backends"][name] = run_backend(name, backends[name], sizes)
        # Written after each backend, so a long run's first half is kept.
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(report.table(results))
    print(f"results: {args.out}")
    if args.check:
        problems = report.problems(results, sizes)
        for problem in problems:
            print(f"bench-smoke: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("bench-smoke: every figure is sane")
    return 0


if __name__ == "__main__":
    sys.exit(main())
