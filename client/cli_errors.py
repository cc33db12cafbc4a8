"""The server's answer to a `corrigo` command in one line, ending with the next step: the
command that shows what exists where the server found nothing, the flag or variable to
fix where the call could not be made."""

from __future__ import annotations

import argparse
import re

import grpc

from corrigo.client.errors import CorrigoError

# NOT_FOUND messages of the server and the command that lists what there is instead;
# `{owner}` is the project the command named, `{dataset}` its OWNER/DATASET.
_LOOK_THERE = [
    (re.compile(r"dataset (?P<owner>[^/ ]+)/\S+ not found"), "`corrigo datasets list {owner}`"),
    (re.compile(r"source (?P<owner>[^/ ]+)/\S+ not found"), "`corrigo sources list {owner}`"),
    (re.compile(r"model \d+ not found in the dataset"), "`corrigo models list {dataset}`"),
    (re.compile(r"model tag .* not found in the dataset"), "`corrigo models tags {dataset}`"),
    (re.compile(r"label .* is not in the taxonomy"), "`corrigo labels list {dataset}`"),
    (re.compile(r"correction session \d+ not found"), "`corrigo sessions list {owner}`"),
    (re.compile(r"practice session \d+ not found"), "`corrigo practice list`"),
    (re.compile(r"user \d+ not found"), "`corrigo users list`"),
    (re.compile(r"API token \d+ not found"), "`corrigo tokens list`"),
]


def _named(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The project and the OWNER/NAME (dataset or source) the command named, if any."""
    pairs = [value for value in vars(args).values() if isinstance(value, tuple) and value]
    named = [getattr(args, key, None) for key in ("owner", "project")]
    owner = next((value for value in [*named, *(pair[0] for pair in pairs)] if value), None)
    dataset = "/".join(pairs[0]) if pairs else None
    return owner, dataset


def _next_step(message: str, owner: str | None, dataset: str | None) -> str:
    for pattern, command in _LOOK_THERE:
        found = pattern.fullmatch(message)
        if found is None:
            continue
        values = {"owner": owner, "dataset": dataset, **found.groupdict()}
        if all(values.get(key) for key in re.findall(r"{(\w+)}", command)):
            return f"; {command.format(**values)} shows what there is"
    return ""


def explain(err: CorrigoError, args: argparse.Namespace) -> str:
    """The server's answer in one line, with what the command named and what to do."""
    message = err.message
    violations = [f"{field}: {problem}" for field, problem in err.field_violations]
    if violations and not all(v in message for v in violations):
        more = err.omitted_violations
        message = "; ".join(violations) + (f"; and {more} more like these" if more else "")
    owner, dataset = _named(args)
    if err.code == grpc.StatusCode.NOT_FOUND and message == "project not found" and owner:
        message = (
            f"project {owner!r} not found (or you are not its member); "
            "`corrigo projects list` shows yours"
        )
    elif err.code == grpc.StatusCode.NOT_FOUND:
        message += _next_step(message, owner, dataset)
    elif err.code == grpc.StatusCode.UNAUTHENTICATED:
        message += "; set CORRIGO_TOKEN or pass --token with a valid token"
    elif err.code == grpc.StatusCode.UNAVAILABLE:
        message += "; is `corrigo serve` running there? (--target, env CORRIGO_TARGET)"
    return f"{err.code.name}: {message}"
