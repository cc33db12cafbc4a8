"""`corrigo sessions create | watch | list`: correction sessions from the command line.

Sessions belong to a project, named by its name (or id); a session is named by its id.
"""

from __future__ import annotations

import argparse

from corrigo.client import Client
from corrigo.client.admin_cli import project_id
from corrigo.client.cli_support import (
    Column,
    Commands,
    add_output,
    bounded,
    connect,
    group,
    print_item,
    print_items,
    print_json_line,
    when,
)
from corrigo.v1 import correction_pb2
from corrigo.v1.correction_pb2 import CorrectionSession, CorrectionSessionChange

_STRATEGIES = ("random", "uncertainty")
_STATUSES = [v.name.lower() for v in CorrectionSession.Status.DESCRIPTOR.values if v.number]
SESSION_COLUMNS: list[Column] = [
    ("ID", lambda s: s.id),
    ("STATUS", lambda s: CorrectionSession.Status.Name(s.status)),
    ("PROGRESS", lambda s: f"{s.progress:.1f}%"),
    ("DOCUMENTS", lambda s: s.document_count),
    ("NAME", lambda s: s.name),
]


def transition_line(change: CorrectionSessionChange) -> str:
    """One line per change: version, status, progress, documents (and why it failed)."""
    session = change.session
    line = (
        f"{change.version}\t{change.changed_at.ToJsonString()}\t"
        f"{CorrectionSession.Status.Name(session.status)}\t{session.progress:.1f}%\t"
        f"{session.document_count} documents"
    )
    if session.failure_reason:
        line += f"\t{session.failure_reason}"
    return line


def _watch_until_end(
    client: Client, project_id: int, session_id: int, as_json: bool
) -> CorrectionSession:
    """Print each change until the stream ends (a line, or a JSON line); the session as
    of the last one."""
    last = CorrectionSession()
    for change in client.corrections.WatchCorrectionSession(
        correction_pb2.WatchCorrectionSessionRequest(project_id=project_id, session_id=session_id)
    ):
        if as_json:
            print_json_line(change)
        else:
            print(transition_line(change), flush=True)
        last = change.session
    return last


def _create(args: argparse.Namespace) -> int:
    request = correction_pb2.CreateCorrectionSessionRequest(
        model_id=args.model_id,
        name=args.name,
        description=args.description,
        document_uids=args.document_uid or [],
        document_group_id=args.document_group_id,
        strategy=correction_pb2.CreateCorrectionSessionRequest.Strategy.Value(
            args.strategy.upper()
        ),
    )
    if args.sample_size is not None:
        request.sample_size.value = args.sample_size
    with connect(args) as client:
        request.project_id = project_id(client, args.project)
        session = client.corrections.CreateCorrectionSession(request)
        if not args.watch:
            print_item(args, session, [*SESSION_COLUMNS, ("CREATED", lambda s: when(s, "created"))])
            return 0
        last = _watch_until_end(client, request.project_id, session.id, args.json)
    return 1 if last.status == CorrectionSession.FAILED else 0


def _watch(args: argparse.Namespace) -> int:
    with connect(args) as client:
        chosen = project_id(client, args.project)
        last = _watch_until_end(client, chosen, args.session_id, args.json)
    return 1 if last.status == CorrectionSession.FAILED else 0


def _list(args: argparse.Namespace) -> int:
    request = correction_pb2.ListCorrectionSessionsRequest(page_size=500)
    if args.status:
        request.status = CorrectionSession.Status.Value(args.status.upper())
    sessions: list[CorrectionSession] = []
    with connect(args) as client:
        request.project_id = project_id(client, args.project)
        while True:
            page = client.corrections.ListCorrectionSessions(request)
            sessions.extend(page.sessions)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    print_items(args, sessions, SESSION_COLUMNS)
    return 0


def add_commands(commands: Commands) -> None:
    sub = group(commands, "sessions", "correction sessions")

    create = sub.add_parser(
        "create", help="create a correction session (a table; JSON with --json)"
    )
    create.add_argument("project", help="the project's name (or id)")
    create.add_argument("model_id", type=int, help="the model's id")
    create.add_argument(
        "--sample-size", type=bounded(1, 1000), help="documents to correct, 1..1000 (default 100)"
    )
    create.add_argument("--name", default="")
    create.add_argument("--description", default="")
    create.add_argument("--strategy", choices=_STRATEGIES, default="random")
    create.add_argument("--document-uid", action="append", help="sample among these (repeatable)")
    create.add_argument("--document-group-id", type=int, default=0, help="sample in this group")
    create.add_argument(
        "--watch",
        action="store_true",
        help="then print each transition instead, as `sessions watch` (JSON lines with --json)",
    )
    add_output(create)
    create.set_defaults(run=_create)

    watch = sub.add_parser(
        "watch",
        help="print each change of a session (version, time, status, progress, documents) "
        "from its creation until it is FINISHED, FAILED or deleted (JSON lines with --json)",
    )
    watch.add_argument("project", help="the project's name (or id)")
    watch.add_argument("session_id", type=int)
    add_output(watch)
    watch.set_defaults(run=_watch)

    listing = sub.add_parser("list", help="list a project's sessions: id, status, progress, ...")
    listing.add_argument("project", help="the project's name (or id)")
    listing.add_argument("--status", choices=_STATUSES)
    add_output(listing)
    listing.set_defaults(run=_list)
