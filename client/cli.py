"""The `corrigo` command: run the server, administer it, and make everyday calls."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import json_format

from corrigo.client import (
    Client,
    CorrigoError,
    correction_cli,
    improvement_cli,
    practice_cli,
    transfer_cli,
)
from corrigo.v1 import admin_pb2, datasets_pb2


def _serve(args: argparse.Namespace) -> int:
    from corrigo.server import app, config

    settings = config.from_arguments(args)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(app.serve(settings))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from corrigo.server.store import database

    async def run() -> list[str]:
        db = database.connect(args.database)
        try:
            return await database.migrate(db)
        finally:
            await database.close(db)

    applied = asyncio.run(run())
    print("\n".join(applied) if applied else "database is up to date", file=sys.stderr)
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from corrigo.server.errors import CorrigoError as ServerError
    from corrigo.server.store import database, identity
    from corrigo.server.validation import Violations

    checks = Violations()
    checks.name("--org", args.org)
    checks.email("--email", args.email)
    if checks.items:
        for field, problem in checks.items:
            print(f"corrigo admin bootstrap: {field}: {problem}", file=sys.stderr)
        return 2

    async def run() -> str:
        db = database.connect(args.database)
        try:
            await database.migrate(db)
            _, _, token = await identity.bootstrap(args.org, args.email)
            return token
        finally:
            await database.close(db)

    try:
        token = asyncio.run(run())
    except ServerError as err:
        print(f"corrigo admin bootstrap: {err.message}", file=sys.stderr)
        return 1
    print(token)
    print(
        f"organization {args.org!r} created; admin {args.email}; the token above is shown once",
        file=sys.stderr,
    )
    return 0


def _whoami(args: argparse.Namespace) -> int:
    with Client(args.target, args.token) as client:
        answer = client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    print(json_format.MessageToJson(answer, preserving_proto_field_name=True))
    return 0


def _owner_and_name(value: str) -> tuple[str, str]:
    owner, slash, name = value.partition("/")
    if not slash or not owner or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected OWNER/NAME, got {value!r}")
    return owner, name


def _export(args: argparse.Namespace) -> int:
    from corrigo.client.export import export_to_file

    owner, name = args.dataset
    request = datasets_pb2.StreamExportDatasetRequest(
        owner=owner,
        name=name,
        comment_uids=args.comment_uid or [],
        source_ids=args.source_id or [],
        order_by=args.order_by or "",
        to=args.to or "",
        limit=args.limit,
        model_version=args.model_version,
        model_tag=args.model_tag or "",
    )
    setattr(request, "from", args.from_ or "")
    with Client(args.target, args.token) as client:
        written = export_to_file(
            client.datasets,
            request,
            Path(args.output),
            args.format,
            restart=args.restart,
            progress=not args.quiet,
        )
    print(f"{written} comments written to {args.output}", file=sys.stderr)
    return 0


def _sync(args: argparse.Namespace) -> int:
    from corrigo.client.sync import sync_file

    owner, name = args.source
    with Client(args.target, args.token) as client:
        totals = sync_file(
            client.sources,
            owner,
            name,
            Path(args.file),
            chunk_size=args.chunk_size,
            progress=not args.quiet,
        )
    print(
        f"{totals.new} new, {totals.updated} updated, {totals.unchanged} unchanged "
        f"in {totals.chunks} chunks",
        file=sys.stderr,
    )
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    from corrigo.client.export import FORMATS

    export = commands.add_parser(
        "export",
        help="export a dataset to JSONL, CSV or Parquet (resumes an interrupted export)",
    )
    export.add_argument("dataset", type=_owner_and_name, metavar="OWNER/DATASET")
    export.add_argument("-o", "--output", required=True, help="the file to write")
    export.add_argument("--format", choices=FORMATS, default="jsonl", help="default %(default)s")
    export.add_argument("--source-id", action="append", help="only this source (repeatable)")
    export.add_argument("--comment-uid", action="append", help="only this comment (repeatable)")
    export.add_argument("--order-by", choices=["timestamp", "created_at"])
    export.add_argument("--from", dest="from_", help="ISO-8601 time: comments from it on")
    export.add_argument("--to", help="ISO-8601 time: comments until it, inclusive")
    export.add_argument("--model-version", type=int, default=0, help="predictions of it")
    export.add_argument("--model-tag", help="predictions of the version it pins")
    export.add_argument(
        "--limit", type=int, default=256, help="comments per page, 1..256 (default %(default)s)"
    )
    export.add_argument("--restart", action="store_true", help="start over instead of resuming")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_connection(export)
    export.set_defaults(run=_export)

    sync = commands.add_parser("sync", help="create or update a source's comments from JSONL")
    sync.add_argument("source", type=_owner_and_name, metavar="OWNER/SOURCE")
    sync.add_argument("file", help="JSONL: a Comment (or an export result) per line")
    sync.add_argument(
        "--chunk-size",
        type=int,
        default=1024,
        help="comments per chunk, 1..4096 (default %(default)s)",
    )
    sync.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_connection(sync)
    sync.set_defaults(run=_sync)


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", help="server HOST:PORT (env CORRIGO_TARGET; default 127.0.0.1:50051)"
    )
    parser.add_argument("--token", help="API token (env CORRIGO_TOKEN)")


def parser() -> argparse.ArgumentParser:
    from corrigo.server import config

    root = argparse.ArgumentParser(
        prog="corrigo",
        description="Corrigo: the system of record for human-in-the-loop model improvement.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC server")
    config.add_arguments(serve)
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    config.add_database_argument(migrate)
    migrate.set_defaults(run=_migrate)

    admin = commands.add_parser("admin", help="administer the database directly")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    bootstrap = admin_commands.add_parser(
        "bootstrap",
        help="create an organization, its first admin and a token (printed alone on stdout)",
    )
    bootstrap.add_argument("--org", required=True, help="organization name")
    bootstrap.add_argument("--email", required=True, help="the first admin's email")
    config.add_database_argument(bootstrap)
    bootstrap.set_defaults(run=_bootstrap)

    whoami = commands.add_parser("whoami", help="show who the token belongs to")
    _add_connection(whoami)
    whoami.set_defaults(run=_whoami)

    practice_cli.add_commands(commands, _add_connection)
    improvement_cli.add_commands(commands, _add_connection)
    correction_cli.add_commands(commands, _add_connection)
    _add_export(commands)
    transfer_cli.add_commands(commands, _add_connection, _owner_and_name)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = args.run(args)
    except CorrigoError as err:
        detail = "".join(f"\n  {field}: {problem}" for field, problem in err.field_violations)
        print(f"corrigo: {err.code.name}: {err.message}{detail}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
