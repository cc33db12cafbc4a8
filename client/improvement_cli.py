"""`corrigo improve SESSION_ID` and `corrigo batch ...`: the improvement pipeline's calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corrigo.client import batch_export
from corrigo.client.cli_support import (
    Column,
    Commands,
    add_connection,
    add_output,
    bounded,
    connect,
    group,
    print_item,
    print_items,
    when,
)
from corrigo.v1 import improvement_pb2

_STATUS = improvement_pb2.ImprovementBatch.Status
BATCH_COLUMNS: list[Column] = [
    ("BATCH", lambda b: b.batch_id),
    ("STATUS", lambda b: _STATUS.Name(b.status)),
    ("SESSIONS", lambda b: b.session_count),
    ("RELEASE", lambda b: b.release_id or "-"),
]


def _improve(args: argparse.Namespace) -> int:
    with connect(args) as client:
        scheduled = client.improvement.UseSessionForImprovement(
            improvement_pb2.UseSessionForImprovementRequest(session_id=args.session_id)
        )
    print_item(
        args,
        scheduled,
        [
            ("SESSION", lambda s: s.session_id),
            ("BATCH", lambda s: s.batch_id or "-"),
            ("NUMBER", lambda s: s.number or "-"),
            ("SCHEDULED", lambda s: when(s, "scheduled_at")),
            ("SKIPPED", lambda s: s.skip_reason if s.skipped else "no"),
        ],
    )
    return 0


def _sessions(args: argparse.Namespace) -> int:
    """Every session of the batch after --after, one JSON object per line (on stdout, or
    into --output as JSONL or Parquet)."""
    request = improvement_pb2.StreamBatchSessionsRequest(
        batch_id=args.batch_id,
        after_number=args.after,
        limit=args.limit,
        events_limit=args.events_limit,
    )
    from corrigo.client.export import answered

    with connect(args) as client:
        # A first call that fails creates no --output file.
        pages = answered(client.improvement.StreamBatchSessions(request))
        if not args.output:
            batch_export.write_jsonl(pages, sys.stdout)
            return 0
        if args.format == "parquet":
            written = batch_export.write_parquet(pages, Path(args.output))
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                written = batch_export.write_jsonl(pages, out)
    print(f"{written} sessions written to {args.output}", file=sys.stderr)
    return 0


def _release(args: argparse.Namespace) -> int:
    with connect(args) as client:
        released = client.improvement.ReleaseBatch(
            improvement_pb2.ReleaseBatchRequest(release_id=args.release_id)
        )
    print_item(args, released, BATCH_COLUMNS)
    return 0


def _list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        answer = client.improvement.ListBatches(improvement_pb2.ListBatchesRequest())
    print_items(args, answer.batches, BATCH_COLUMNS)
    return 0


def add_commands(commands: Commands) -> None:
    improve = commands.add_parser("improve", help="schedule a practice session for improvement")
    improve.add_argument("session_id", type=int, help="the practice session's id")
    add_output(improve)
    improve.set_defaults(run=_improve)

    sub = group(commands, "batch", "improvement batches (service or admin role)")
    sessions = sub.add_parser("sessions", help="print a batch's sessions as JSON lines")
    sessions.add_argument("--batch-id", default="", help="the batch (default: the active one)")
    sessions.add_argument("--after", type=int, default=0, help="start after this number")
    sessions.add_argument(
        "--limit", type=bounded(1, 100), default=10, help="sessions per page, 1..100"
    )
    sessions.add_argument(
        "--events-limit",
        type=bounded(1, 1000),
        default=100,
        help="events per session, 1..1000 (default %(default)s)",
    )
    sessions.add_argument("-o", "--output", help="write into this file instead of stdout")
    sessions.add_argument(
        "--format", choices=batch_export.FORMATS, default="jsonl", help="default %(default)s"
    )
    add_connection(sessions)
    sessions.set_defaults(run=_sessions)
    release = sub.add_parser("release", help="release the active batch")
    release.add_argument("release_id", help="your id for this release; repeating it is safe")
    add_output(release)
    release.set_defaults(run=_release)
    listing = sub.add_parser("list", help="list batches with their counts")
    add_output(listing)
    listing.set_defaults(run=_list)
