"""`corrigo practice ...`: everyday calls on the caller's practice sessions."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from google.protobuf import json_format
from google.protobuf.message import Message

from corrigo.client import Client
from corrigo.v1 import practice_pb2


def print_json(message: Message) -> None:
    print(json_format.MessageToJson(message, preserving_proto_field_name=True))


def _show(args: argparse.Namespace) -> int:
    with Client(args.target, args.token) as client:
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
    with Client(args.target, args.token) as client:
        answer = client.practice.ListPracticeSessions(
            practice_pb2.ListPracticeSessionsRequest(page_size=args.limit)
        )
    for session in answer.sessions:
        title = session.title.value if session.HasField("title") else "-"
        project = session.project_id.value if session.HasField("project_id") else "-"
        print(f"{session.session_id}\tproject={project}\t{title}")
    return 0


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    add_connection: Callable[[argparse.ArgumentParser], None],
) -> None:
    practice = commands.add_parser("practice", help="your practice sessions")
    sub = practice.add_subparsers(dest="practice_command", required=True, metavar="COMMAND")
    show = sub.add_parser("show", help="show a session as JSON (with --events, its event log)")
    show.add_argument("session_id", type=int)
    show.add_argument("--events", action="store_true", help="also print every event")
    add_connection(show)
    show.set_defaults(run=_show)
    listing = sub.add_parser("list", help="list your newest sessions")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (1..100)")
    add_connection(listing)
    listing.set_defaults(run=_list)
