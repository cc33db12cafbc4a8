"""`corrigo practice ...`: everyday calls on the caller's practice sessions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from corrigo.client.cli_support import (
    Column,
    Commands,
    add_output,
    as_dict,
    bounded,
    connect,
    every,
    group,
    print_item,
    print_items,
    when,
)
from corrigo.v1 import practice_pb2
from corrigo.v1.practice_pb2 import PracticeEvent, PracticeSession


def _wrapped(message: Any, field: str) -> Any:
    """A wrapper-typed field's value, or - when unset."""
    return getattr(message, field).value if message.HasField(field) else "-"


SESSION_COLUMNS: list[Column] = [
    ("ID", lambda s: s.session_id),
    ("KIND", lambda s: PracticeSession.Kind.Name(s.kind)),
    ("USER", lambda s: s.user_id),
    ("PROJECT", lambda s: _wrapped(s, "project_id")),
    ("CLASS", lambda s: _wrapped(s, "class_id")),
    ("AGENT", lambda s: _wrapped(s, "agent_id")),
    ("TITLE", lambda s: _wrapped(s, "title")),
    ("RESPONSES", lambda s: len(s.responses)),
    ("CREATED", lambda s: when(s, "created_at")),
    ("UPDATED", lambda s: when(s, "updated_at")),
]
EVENT_COLUMNS: list[Column] = [
    ("EVENT", lambda e: e.event_id),
    ("TYPE", lambda e: PracticeEvent.Type.Name(e.type)),
    ("TEXT", lambda e: e.text),
    ("RATING", lambda e: e.rating or "-"),
    ("RESPONSE", lambda e: e.response_id or "-"),
    ("CREATED", lambda e: when(e, "created_at")),
]


def _show(args: argparse.Namespace) -> int:
    """The session as a table (with --events, its event log as a second one), or with
    --json one object: the session, or {"session": ..., "events": [...]}."""
    with connect(args) as client:
        session = client.practice.GetPracticeSession(
            practice_pb2.GetPracticeSessionRequest(session_id=args.session_id)
        )
        events = (
            every(
                client.practice.ListEvents,
                practice_pb2.ListEventsRequest(session_id=args.session_id),
                "events",
            )
            if args.events
            else []
        )
    if args.json and args.events:
        whole = {"session": as_dict(session), "events": [as_dict(event) for event in events]}
        print(json.dumps(whole, indent=2, ensure_ascii=False))
        return 0
    print_item(args, session, SESSION_COLUMNS)
    if args.events:
        print()
        print_items(args, events, EVENT_COLUMNS)
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
    show = sub.add_parser("show", help="show a session (with --events, its event log)")
    show.add_argument("session_id", type=int, help="the practice session's id")
    show.add_argument("--events", action="store_true", help="also print every event")
    add_output(show)
    show.set_defaults(run=_show)
    listing = sub.add_parser("list", help="list your newest sessions")
    listing.add_argument(
        "--limit", type=bounded(1, 100), default=20, help="at most this many, 1..100"
    )
    add_output(listing)
    listing.set_defaults(run=_list)
