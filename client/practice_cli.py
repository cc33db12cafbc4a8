"""`corrigo practice ...`: everyday calls on the caller's practice sessions."""

from __future__ import annotations

import argparse

from corrigo.client.cli_support import (
    Commands,
    add_connection,
    add_output,
    bounded,
    connect,
    group,
    print_items,
    print_json,
)
from corrigo.v1 import practice_pb2


def _show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        session = client.practice.GetPracticeSession(
            practice_pb2.GetPracticeSessionRequest(session_id=args.session_id)
        )
        print_json(session)
        if args.events:
            token = ""
            while True:
                page = client.practice.ListEvents(
                    practice_pb2.ListEventsRequest(
                        session_id=args.session_id, page_size=1000, page_token=token
                    )
                )
                for event in page.events:
                    print_json(event)
                token = page.next_page_token
                if not token:
                    break
    return 0


def _list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        answer = client.practice.ListPracticeSessions(
            practice_pb2.ListPracticeSessionsRequest(page_size=args.limit)
        )
    print_items(
        args,
        answer.sessions,
        [
            ("ID", lambda s: s.session_id),
            ("PROJECT", lambda s: s.project_id.value if s.HasField("project_id") else "-"),
            ("CLASS", lambda s: s.class_id.value if s.HasField("class_id") else "-"),
            ("TITLE", lambda s: s.title.value if s.HasField("title") else "-"),
        ],
    )
    return 0


def add_commands(commands: Commands) -> None:
    sub = group(commands, "practice", "your practice sessions")
    show = sub.add_parser("show", help="show a session as JSON (with --events, its event log)")
    show.add_argument("session_id", type=int)
    show.add_argument("--events", action="store_true", help="also print every event")
    add_connection(show)
    show.set_defaults(run=_show)
    listing = sub.add_parser("list", help="list your newest sessions")
    listing.add_argument(
        "--limit", type=bounded(1, 100), default=20, help="at most this many, 1..100"
    )
    add_output(listing)
    listing.set_defaults(run=_list)
