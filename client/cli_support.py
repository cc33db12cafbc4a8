"""What the `corrigo` commands share: connection flags, a client with a token, checked
numbers, and output as tables for people or JSON for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from tabulate import tabulate

from corrigo.client import Client
from corrigo.client.channel import resolve
from corrigo.client.errors import UsageError

Column = tuple[str, Callable[[Any], Any]]


def add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", help="server HOST:PORT (env CORRIGO_TARGET; default 127.0.0.1:50051)"
    )
    parser.add_argument("--token", help="API token (env CORRIGO_TOKEN)")


def add_output(parser: argparse.ArgumentParser) -> None:
    """`--json` and the connection flags: every command that prints resources has both."""
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table"
    )
    add_connection(parser)


def connect(args: argparse.Namespace) -> Client:
    """A client for the command's target and token; refuses to call without a token."""
    target, token = resolve(args.target, args.token)
    if not token:
        raise UsageError(
            "no API token: set CORRIGO_TOKEN or pass --token "
            "(`corrigo admin bootstrap` prints the first one, `corrigo tokens create` more)"
        )
    return Client(target, token)


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, got {value}")
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


def _whole_numbers(value: Any) -> Any:
    """JSON numbers of Struct values come back as floats; print 1.0 as 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def as_dict(message: Message) -> Any:
    """A message's JSON mapping with proto field names."""
    return _whole_numbers(json_format.MessageToDict(message, preserving_proto_field_name=True))


def print_json(message: Message) -> None:
    print(json.dumps(as_dict(message), indent=2, ensure_ascii=False))


def print_json_line(message: Message) -> None:
    print(json.dumps(as_dict(message), ensure_ascii=False, separators=(",", ":")))


def print_items(
    args: argparse.Namespace, items: Iterable[Message], columns: Sequence[Column]
) -> None:
    """A listing: a table with a header line, or with --json one JSON array."""
    items = list(items)
    if args.json:
        print(json.dumps([as_dict(item) for item in items], indent=2, ensure_ascii=False))
        return
    rows = [[cell(item) for _, cell in columns] for item in items]
    print(tabulate(rows, headers=[header for header, _ in columns], tablefmt="simple"))


def print_item(args: argparse.Namespace, item: Message, columns: Sequence[Column]) -> None:
    """One resource: FIELD  VALUE lines, or with --json its JSON object."""
    if args.json:
        print_json(item)
        return
    print(tabulate([[header, cell(item)] for header, cell in columns], tablefmt="plain"))


def done(message: str) -> None:
    """A confirmation for people, on stderr so stdout stays what scripts read."""
    print(message, file=sys.stderr)
