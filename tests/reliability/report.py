"""Figures the reliability tests measure, collected into .build/reliability/*.json and
rendered into the table of tests/reliability/README.md by `make reliability`."""

from __future__ import annotations

import collections
import datetime
import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / ".build" / "reliability"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"


def scale() -> float:
    """How hard the suite pushes: 1 in the normal run, more under `make reliability`."""
    return float(os.environ.get("RELIABILITY_SCALE", "1"))


# What each area's row says, from the counts its tests recorded.
TEMPLATES: dict[str, tuple[str, str]] = {
    "bad input": (
        "{requests} generated requests over {rpcs} RPCs (at least {min_per_rpc} per RPC)",
        "0 INTERNAL/UNKNOWN, 0 hangs; {invalid_argument} INVALID_ARGUMENT, each naming a field",
    ),
    "auth matrix": (
        "{calls} calls: every RPC x no/malformed/unknown/revoked token, other organization, "
        "each role",
        "every call answered exactly the expected code",
    ),
    "crash durability": (
        "{kills} SIGKILLs during bulk sync, labelling and batch scheduling",
        "{acknowledged} acknowledged writes all present after restart; "
        "{partial} half-written syncs; SQLite integrity_check ok {integrity_ok}/{integrity_checks}",
    ),
    "shutdown mid-stream": (
        "{shutdowns} SIGTERMs while {streams} export and batch streams ran",
        "health NOT_SERVING each time; {resumed} streams cut (UNAVAILABLE) and resumed, "
        "the rest finished in the grace period; {completed} complete reads, 0 missing, "
        "0 repeated",
    ),
    "shutdown of followers": (
        "SIGTERM while a follow stream waits live, with a {grace} s grace period",
        "the stream ended UNAVAILABLE (SERVER_STOPPING) and the server exited 0 within "
        "{stop_seconds} s; resumed on the restarted server from its last continuation",
    ),
    "overload": (
        "{burst} calls at once against a cap of {cap}; deadlines; oversized messages; "
        "a stalled stream consumer",
        "{exhausted} answered RESOURCE_EXHAUSTED at once, none failed otherwise; "
        "expired calls wrote nothing; server RSS +{rss_growth_mb} MB in all, flat while stalled",
    ),
    "stalled streams": (
        "{streams} export streams whose clients stopped reading after one page; {calls} "
        "reads and writes meanwhile",
        "every call answered OK in {seconds} s in all; no connection held by a stream; "
        "server RSS +{rss_stalled} MB while stalled, +{rss_end} MB after",
    ),
    "health while exporting": (
        "Health/Check every 5 ms while {exports} StreamExportDataset calls with include_total "
        "(a count of {comments} comments each) run one after another, then while one reads",
        "p99 {p99_ms} ms, maximum {max_ms} ms over {calls} calls (idle p99 {idle_p99_ms} "
        "ms; goals: p99 under 20 ms, maximum under 100 ms)",
    ),
    "cancellation": (
        "{calls} writes of five kinds cancelled at random points",
        "nothing half-written; every kind of write answers OK afterwards",
    ),
    "database restart": (
        "PostgreSQL stopped for 2 s and started under {calls} calls of reads, writes and "
        "exports; then stopped and started with no calls between",
        "{ok} OK, {unavailable} UNAVAILABLE, 0 INTERNAL; the first call after the quiet "
        "restart answered OK",
    ),
    "disk full": (
        "SQLite on a 16 MB tmpfs filled up during a sync",
        "RESOURCE_EXHAUSTED STORAGE_FULL, the cause in the log; reads kept working; writes "
        "worked again once space was freed",
    ),
    "event loop": (
        "Health/Check every 5 ms ({locked_calls} calls) while another process held the "
        "write lock and readers kept calling; ({cold_calls} calls) during an export of a "
        "dataset not in the page cache",
        "p99 {locked_p99_ms} ms with the lock held ({idle_p99_ms} ms with the same readers "
        "and no lock), {cold_p99_ms} ms during the cold export",
    ),
    "deferred delete": (
        "a dataset with {comments} labellings, then a source of {comments} comments deleted "
        "({fill_s} s to fill); SyncComments with a 1 s deadline every 0.1 s while each purge ran",
        "DeleteDataset {dataset_delete_ms} ms, DeleteSource {source_delete_ms} ms, names "
        "reused at once; purges {dataset_purge_rows_per_s} and {source_purge_rows_per_s} "
        "rows/s; {dataset_writes} and {source_writes} writes all OK, slowest "
        "{dataset_slowest_write_ms} and {source_slowest_write_ms} ms",
    ),
    "two replicas": (
        "export started on one replica and resumed on the other; {writes} concurrent writes "
        "through both; {schedules} batch schedules",
        "same comments, none missing or repeated; all writes present; numbers 1..N gap-free",
    ),
    "follow across replicas": (
        "{writes} writes (syncs, labellings, deletes) through one replica; {followers} "
        "followers on the other",
        "every change reached every follower; each rebuilt state equals a fresh export "
        "({comments} comments); delivery p50 {p50_ms} ms, p99 {p99_ms} ms over {samples} "
        "syncs x followers",
    ),
    "follow through SIGKILL": (
        "{kills} SIGKILLs while {followers} followers read and two writers wrote",
        "{resumes} resumes from the last continuation; {acknowledged} acknowledged writes "
        "all kept; each rebuilt state equals a fresh export ({comments} comments)",
    ),
    "stalled followers": (
        "{streams} follow streams whose clients stopped reading after one message (half in "
        "the snapshot, half live, {writes} syncs meanwhile); {calls} reads and writes meanwhile",
        "every call answered OK in {seconds} s in all; no transaction held by a stream; "
        "server RSS +{rss_stalled} MB while stalled, +{rss_end} MB after",
    ),
    "follow under load": (
        "{writers} writers ({writes} writes) for {seconds} s against {followers} followers, "
        "each cut off and resumed {cuts} times",
        "each rebuilt state equals a fresh export ({comments} comments)",
    ),
    "workers": (
        "`--workers 2`: {channels} channels; a worker SIGKILLed ({kills}) while "
        "{calls_during_kill} calls ran on the other; SIGTERM with a write in flight on "
        "each; the sweep over an interval",
        "every channel on one worker, both reached; the killed worker replaced, 0 failed "
        "calls on the other; {drained} in-flight writes finished and both drained; "
        "{sweeps} sweeps, each by one worker",
    ),
    "secrets": (
        "{calls} calls with valid, bad and revoked tokens; the log and every error message "
        "grepped; an induced database failure",
        "no token in logs or messages; only hashes stored; no SQL or stack in any message",
    ),
}


def record(area: str, backend: str, **counts: int | float) -> None:
    """Add counts for an area on a backend; numbers add up across calls."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{area.replace(' ', '_')}.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    row = rows.setdefault(backend, {})
    for key, value in counts.items():
        row[key] = row.get(key, 0) + value
    path.write_text(json.dumps(rows, indent=2, sort_keys=True))


def record_per_rpc(area: str, backend: str, rpc: str, requests: int) -> None:
    """Count requests per RPC (kept in the JSON; the table shows the minimum)."""
    record(area, backend, requests=requests)
    path = RESULTS / f"{area.replace(' ', '_')}.json"
    rows = json.loads(path.read_text())
    per_rpc = rows[backend].setdefault("per_rpc", {})
    per_rpc[rpc] = per_rpc.get(rpc, 0) + requests
    rows[backend]["rpcs"] = len(per_rpc)
    rows[backend]["min_per_rpc"] = min(per_rpc.values())
    path.write_text(json.dumps(rows, indent=2, sort_keys=True))


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def render() -> str:
    lines = [
        f"Measured by `make reliability` (RELIABILITY_SCALE={scale():g}) on "
        f"{datetime.date.today().isoformat()}, {_machine()}.",
        "",
        "| area | backend | what was tried | what held |",
        "|---|---|---|---|",
    ]
    for area, (tried, held) in TEMPLATES.items():
        path = RESULTS / f"{area.replace(' ', '_')}.json"
        if not path.exists():
            continue
        for backend, row in sorted(json.loads(path.read_text()).items()):
            figures = collections.defaultdict(int, row)
            lines.append(
                f"| {area} | {backend} | {tried.format_map(figures)} | {held.format_map(figures)} |"
            )
    return "\n".join(lines)


def write_readme(readme: Path) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    write_readme(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/reliability/README.md"))
