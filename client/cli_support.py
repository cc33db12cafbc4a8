"""What the `corrigo` commands share: connection flags, a client with a token, checked
numbers, and output as tables for people or JSON for scripts."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message
from tabulate import tabulate

from corrigo.client import Client
from corrigo.client.channel import resolve
from corrigo.client.errors import UsageError
from corrigo.client.reachable import DEFAULT_WAIT_SECONDS, wait_until_reachable

Column = tuple[str, Callable[[Any], Any]]
Run = Callable[[argparse.Namespace], int]


class Commands(Protocol):
    """What `add_subparsers()` answers, as the commands use it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", help="server HOST:PORT (env CORRIGO_TARGET; default 127.0.0.1:50051)"
    )
    parser.add_argument("--token", help="API token (env CORRIGO_TOKEN)")
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=os.environ.get("CORRIGO_WAIT", f"{DEFAULT_WAIT_SECONDS:g}"),
        metavar="SECONDS",
        help="how long to wait for a server that cannot be reached yet, retrying "
        "(env CORRIGO_WAIT; default %(default)s)",
    )


def add_output(parser: argparse.ArgumentParser) -> None:
    """`--json` and the connection flags: every command that prints resources has both."""
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table"
    )
    add_connection(parser)


def connect(args: argparse.Namespace) -> Client:
    """A client for the command's target and token, once the server can be reached (up
    to --wait seconds); refuses to call without a token."""
    target, token = resolve(args.target, args.token)
    if not token:
        raise UsageError(
            "no API token: set CORRIGO_TOKEN or pass --token "
            "(`corrigo admin bootstrap` prints the first one, `corrigo tokens create` more)"
        )
    client = Client(target, token)
    try:
        wait_until_reachable(client.channel, target, args.wait)
    except BaseException:
        client.close()
        raise
    return client


def shows_progress(args: argparse.Namespace) -> bool:
    """A progress bar is drawn on a terminal only (a log keeps no carriage returns), and
    never with -q."""
    return not args.quiet and sys.stderr.isatty()


def owner_and_name(value: str) -> tuple[str, str]:
    """An argparse type: OWNER/NAME, as a pair."""
    owner, slash, name = value.partition("/")
    if not slash or not owner or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected OWNER/NAME, got {value!r}")
    return owner, name


def add_named(parser: argparse.ArgumentParser, what: str) -> None:
    """The positional OWNER/WHAT argument `what` (a source or dataset), as a pair."""
    parser.add_argument(what, type=owner_and_name, metavar=f"OWNER/{what.upper()}")


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
    """One JSON line: how streams print with --json (JSON lines)."""
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


def every(call: Callable[[Any], Any], request: Any, field: str) -> list[Any]:
    """Every item of a paged list RPC (page_size / page_token): `field` of each page."""
    items: list[Any] = []
    request.page_size = 100
    while True:
        page = call(request)
        items.extend(getattr(page, field))
        if not page.next_page_token:
            return items
        request.page_token = page.next_page_token


def when(message: Message, field: str) -> str:
    """A timestamp field for a table: UTC to the second, or - when unset."""
    if not message.HasField(field):
        return "-"
    moment = getattr(message, field).ToDatetime()
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def group(commands: Commands, name: str, help: str) -> Commands:
    """A command with subcommands (`corrigo NAME COMMAND`); alone, it prints its help."""
    parser = commands.add_parser(name, help=help)
    parser.set_defaults(help_of=parser)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def command(sub: Commands, name: str, help: str, run: Run) -> argparse.ArgumentParser:
    """A subcommand that prints resources, with --json and the connection flags."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help)
    add_output(parser)
    parser.set_defaults(run=run)
    return parser
