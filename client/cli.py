"""The `corrigo` command: run the server, administer it, and make everyday calls.

Only `serve`, `migrate` and `admin bootstrap` import the server (and with it Peewee and
the database drivers); every other command needs only the client. A user error never
shows a traceback: it is one line `corrigo COMMAND: what, where; what to do` on stderr
and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import sys
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import grpc

from corrigo.client import (
    CorrigoError,
    admin_cli,
    cli_help,
    correction_cli,
    datasets_cli,
    improvement_cli,
    practice_cli,
    transfer_cli,
)
from corrigo.client.cli_errors import explain
from corrigo.client.cli_support import (
    Commands,
    add_connection,
    add_named,
    add_output,
    bounded,
    connect,
    group,
    print_item,
    shows_progress,
)
from corrigo.client.errors import UsageError
from corrigo.v1 import admin_pb2, datasets_pb2, errors_pb2

SERVER_COMMANDS = ("serve", "migrate", "admin")


def _serve(args: argparse.Namespace) -> int:
    from corrigo.server import app, config
    from corrigo.server.ops import logs

    settings = config.from_arguments(args)
    logs.configure(settings.log_level, settings.log_format)
    try:
        if settings.workers > 1:
            from corrigo.server.ops import workers

            return workers.supervise(settings)
        asyncio.run(app.serve(settings))
    except config.ConfigError as err:
        raise UsageError(str(err)) from None
    except _open_errors() as err:
        raise _open_problem(settings.database_url, err) from None
    return 0


def _open_errors() -> tuple[type[Exception], ...]:
    """What opening a database raises when it is missing, unreachable or refuses us."""
    import sqlite3

    import asyncpg
    import peewee

    from corrigo.server.api.errors import Unavailable

    return (OSError, sqlite3.Error, peewee.DatabaseError, asyncpg.PostgresError, Unavailable)


def _open_problem(url: str, err: Exception) -> UsageError:
    """A database that cannot be opened, in one line (the drivers' messages can be long)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UsageError(
        f"cannot open the database {url}: {first}; check --database (env CORRIGO_DATABASE_URL)"
        " and that the database exists (createdb NAME for PostgreSQL)"
    )


def _migrate(args: argparse.Namespace) -> int:
    from corrigo.server.store import database

    async def run() -> list[str]:
        db = database.connect(args.database)
        try:
            return await database.migrate(db)
        finally:
            await db.close_pool()

    try:
        applied = asyncio.run(run())
    except _open_errors() as err:
        raise _open_problem(args.database, err) from None
    print("\n".join(applied) if applied else "database is up to date", file=sys.stderr)
    return 0


def _bootstrap_database(given: str | None) -> str:
    """The database bootstrap writes to: --database, else CORRIGO_DATABASE_URL, else the
    `corrigo serve` default, which must exist already: a new file there would be a second
    database that no server reads."""
    from corrigo.server import config

    if given:
        return given
    from_env = os.environ.get("CORRIGO_DATABASE_URL")
    if from_env:
        try:
            return config.database_url(from_env)
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"CORRIGO_DATABASE_URL: {err}") from None
    path = Path(config.DEFAULT_URL.removeprefix("sqlite:///")).resolve()
    if not path.exists():
        raise UsageError(
            f"no database at {path} (the default, `corrigo serve` run in this directory "
            "creates it): run it where `corrigo serve` runs, or pass --database URL "
            "(env CORRIGO_DATABASE_URL)"
        )
    return config.DEFAULT_URL


def _shown(url: str) -> str:
    """A SQLite URL as the absolute path of its file; any other URL as it is."""
    if url.startswith("sqlite:///"):
        return str(Path(url.removeprefix("sqlite:///")).resolve())
    return url


def _bootstrap(args: argparse.Namespace) -> int:
    from corrigo.server.api.errors import CorrigoError as ServerError
    from corrigo.server.api.validation import Violations
    from corrigo.server.store import database, identity

    checks = Violations()
    checks.name("--org", args.org)
    checks.email("--email", args.email)
    if checks.items:
        problems = "; ".join(f"{field}: {problem}" for field, problem in checks.items)
        print(f"corrigo admin bootstrap: {problems}", file=sys.stderr)
        return 2
    url = _bootstrap_database(args.database)

    async def run() -> str:
        db = database.connect(url)
        try:
            await database.migrate(db)
            _, _, token = await identity.bootstrap(args.org, args.email)
            return token
        finally:
            await db.close_pool()

    try:
        token = asyncio.run(run())
    except ServerError as err:
        if err.reason == errors_pb2.ALREADY_BOOTSTRAPPED:
            raise UsageError(
                f"{err.message}: a token for one of its admins comes from `corrigo admin "
                f"token --org {args.org} --email ADMIN_EMAIL` run here, or from `corrigo "
                "tokens create` with an admin's token"
            ) from None
        raise UsageError(err.message) from None
    except _open_errors() as err:
        raise _open_problem(url, err) from None
    print(token)
    print(
        f"organization {args.org!r} created in {_shown(url)}; admin {args.email}; "
        "the token above is shown once",
        file=sys.stderr,
    )
    return 0


def _break_glass(args: argparse.Namespace) -> int:
    """`admin token`: a token for an existing admin, minted in the database directly, for
    an operator who lost the last one or must rotate it; the log keeps who and when."""
    import getpass
    import logging
    import socket

    from corrigo.server.api.errors import CorrigoError as ServerError
    from corrigo.server.ops import logs
    from corrigo.server.store import database, identity

    logs.configure("INFO", "text")
    url = _bootstrap_database(args.database)

    async def run() -> tuple[int, int, str]:
        db = database.connect(url)
        try:
            await database.migrate(db)
            user, row, token = await identity.break_glass(args.org, args.email)
            return user.id, row.id, token
        finally:
            await db.close_pool()

    try:
        user_id, token_id, token = asyncio.run(run())
    except ServerError as err:
        raise UsageError(err.message) from None
    except _open_errors() as err:
        raise _open_problem(url, err) from None
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    logging.getLogger("corrigo.admin").warning(
        "break-glass token %d issued for admin %s (user %d) of organization %r in %s at %s "
        "by %s on %s",
        token_id,
        args.email,
        user_id,
        args.org,
        _shown(url),
        now,
        getpass.getuser(),
        socket.gethostname(),
    )
    print(token)
    print(
        f"token {token_id} for {args.email}; the token above is shown once "
        f"(`corrigo tokens delete {token_id}` revokes it)",
        file=sys.stderr,
    )
    return 0


def _membership(member: admin_pb2.Member) -> str:
    return f"{member.project_id} ({admin_pb2.Member.Role.Name(member.role).lower()})"


def _whoami(args: argparse.Namespace) -> int:
    with connect(args) as client:
        me = client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    print_item(
        args,
        me,
        [
            ("USER", lambda m: f"{m.user.email} ({m.user.id})"),
            ("ROLE", lambda m: admin_pb2.User.Role.Name(m.user.role)),
            ("ORGANIZATION", lambda m: m.organization.name),
            ("TOKEN", lambda m: m.token_id),
            ("PROJECTS", lambda m: ", ".join(_membership(member) for member in m.memberships)),
        ],
    )
    return 0


def _completion(args: argparse.Namespace) -> int:
    """The shell's completion script for every command and flag, from the parser."""
    import shtab

    print(shtab.complete(parser(), shell=args.shell))
    return 0


def _instant(value: str) -> str:
    """An argparse type: an ISO-8601 time, passed on as written."""
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time such as 2024-01-31T12:00:00Z, got {value!r}"
        ) from None
    return value


def _utc(value: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _first_interrupt() -> threading.Event:
    """An event the first Ctrl-C sets (the export then stops after its page, cleanly); a
    second one interrupts at once. A KeyboardInterrupt raised inside gRPC's callbacks
    could be lost, and the export would go on."""
    stop = threading.Event()

    def interrupted(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, interrupted)
    return stop


def _export(args: argparse.Namespace) -> int:
    from corrigo.client.export import export_to_file, export_to_stream

    if args.from_ and args.to and _utc(args.from_) > _utc(args.to):
        raise UsageError(
            f"--from {args.from_} is after --to {args.to}: nothing could match; swap them",
            status=2,
        )
    if args.follow and args.format != "jsonl":
        raise UsageError(
            "--follow writes JSONL only: drop --format or pass --format jsonl", status=2
        )
    owner, name = args.dataset
    request = datasets_pb2.StreamExportDatasetRequest(
        owner=owner,
        name=name,
        follow=args.follow,
        comment_uids=args.comment_uid or [],
        source_ids=args.source_id or [],
        order_by=args.order_by or "",
        to=args.to or "",
        limit=args.limit,
        model_version=args.model_version,
        model_tag=args.model_tag or "",
    )
    setattr(request, "from", args.from_ or "")
    to_stdout = args.output == "-"
    with connect(args) as client:
        try:
            if to_stdout:
                written = export_to_stream(
                    client.datasets,
                    request,
                    sys.stdout.buffer,
                    args.format,
                    progress=shows_progress(args),
                )
            else:
                written = export_to_file(
                    client.datasets,
                    request,
                    Path(args.output),
                    args.format,
                    restart=args.restart,
                    progress=shows_progress(args),
                    stop=_first_interrupt(),
                )
        except KeyboardInterrupt:
            if to_stdout:
                raise
            print(
                f"corrigo export: interrupted; {args.output} keeps every complete page: run "
                "the same command again to resume where it stopped (--restart starts over)",
                file=sys.stderr,
            )
            return 130
    where = "standard output" if to_stdout else args.output
    print(f"{written} comments written to {where}", file=sys.stderr)
    return 0


def _sync(args: argparse.Namespace) -> int:
    from corrigo.client.sync import sync_file

    owner, name = args.source
    with connect(args) as client:
        try:
            totals = sync_file(
                client.sources,
                owner,
                name,
                Path(args.file),
                chunk_size=args.chunk_size,
                progress=shows_progress(args),
            )
        except KeyboardInterrupt:
            print(
                "corrigo sync: interrupted; the chunks acknowledged so far are stored: run the "
                "same command again to sync the rest (comments stored already stay unchanged)",
                file=sys.stderr,
            )
            return 130
    print(
        f"{totals.new} new, {totals.updated} updated, {totals.unchanged} unchanged "
        f"in {totals.chunks} chunks",
        file=sys.stderr,
    )
    return 0


def _add_transfers(commands: Commands) -> None:
    """`export` and `sync`: whole datasets out of the server and comments into it."""
    from corrigo.client.export import FORMATS

    export = commands.add_parser(
        "export",
        help="export a dataset to JSONL, CSV or Parquet (resumes an interrupted export)",
    )
    add_named(export, "dataset")
    export.add_argument(
        "-o", "--output", required=True, help="the file to write, or - for standard output"
    )
    export.add_argument("--format", choices=FORMATS, default="jsonl", help="default %(default)s")
    export.add_argument("--source-id", action="append", help="only this source (repeatable)")
    export.add_argument("--comment-uid", action="append", help="only this comment (repeatable)")
    export.add_argument("--order-by", choices=["timestamp", "created_at"])
    export.add_argument(
        "--from", dest="from_", type=_instant, help="ISO-8601 time: comments from it on"
    )
    export.add_argument("--to", type=_instant, help="ISO-8601 time: comments until it, inclusive")
    export.add_argument("--model-version", type=int, default=0, help="predictions of it")
    export.add_argument("--model-tag", help="predictions of the version it pins")
    export.add_argument(
        "--limit",
        type=bounded(1, 256),
        default=256,
        help="comments per page, 1..256 (default %(default)s)",
    )
    export.add_argument("--restart", action="store_true", help="start over instead of resuming")
    export.add_argument(
        "--follow",
        action="store_true",
        help="JSONL only: after the export, keep writing each change as it commits (a "
        'deleted comment as a line {"deleted_uid": UID}, a reset of the view as '
        '{"reset": true}; corrigo sync and import skip both); retries a lost server for '
        "as long as it runs; Ctrl-C stops, and the same command resumes",
    )
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_connection(export)
    export.set_defaults(run=_export)

    sync = commands.add_parser("sync", help="create or update a source's comments from JSONL")
    add_named(sync, "source")
    sync.add_argument(
        "file",
        help="JSONL: one comment per line, as a Comment's JSON (comments.proto; at least "
        '{"id": ..., "timestamp": ...}) or an export result (what `corrigo export` writes)',
    )
    sync.add_argument(
        "--chunk-size",
        type=bounded(1, 4096),
        default=1024,
        help="comments per chunk, 1..4096 (default %(default)s)",
    )
    sync.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_connection(sync)
    sync.set_defaults(run=_sync)


def _add_server_commands(commands: Commands, with_flags: bool) -> None:
    """serve, migrate and admin bootstrap; their flags (and so the server's modules) only
    when one of them runs or shows its help."""
    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.set_defaults(run=_serve)
    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(run=_migrate)
    admin_commands = group(commands, "admin", "administer the database directly")
    bootstrap = admin_commands.add_parser(
        "bootstrap",
        help="create an organization, its first admin and a token (printed alone on stdout)",
        description="Creates an organization, its first admin and an API token, printed "
        "alone on stdout. The database is --database, else CORRIGO_DATABASE_URL, else "
        "./corrigo.sqlite3 when it exists (where `corrigo serve` runs with no flags).",
    )
    bootstrap.add_argument("--org", required=True, help="organization name")
    bootstrap.add_argument("--email", required=True, help="the first admin's email")
    bootstrap.set_defaults(run=_bootstrap)
    token = admin_commands.add_parser(
        "token",
        help="break glass: a new token for an existing admin, minted in the database",
        description="Mints an API token for an existing admin of the organization, "
        "printed alone on stdout, straight in the database (for whoever lost the last "
        "admin token, or must rotate it after a leak), and logs a WARNING naming who and "
        "when. The database is found as for `admin bootstrap`.",
    )
    token.add_argument("--org", required=True, help="organization name")
    token.add_argument("--email", required=True, help="the email of one of its admins")
    token.set_defaults(run=_break_glass)
    if not with_flags:
        return
    from corrigo.server import config

    config.add_arguments(serve)
    config.add_database_argument(migrate)
    for direct in (bootstrap, token):
        config.add_database_argument(direct)
        direct.set_defaults(database=None)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, as every other error of the command, with where to look;
    help that ends with an example (`cli_help`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")

    def format_help(self) -> str:
        after = cli_help.epilog(self.prog)
        return super().format_help() + (f"\n{after}" if after else "")


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; the server's flags only when `command` is one of
    SERVER_COMMANDS (None: every flag, for documentation)."""
    try:
        version = metadata.version("corrigo")
    except metadata.PackageNotFoundError:
        version = "unknown"
    # Typed as the base class: its subcommands are _Parser too (argparse uses type(root)).
    root: argparse.ArgumentParser = _Parser(
        prog="corrigo",
        description="Corrigo: the system of record for human-in-the-loop model improvement. "
        "Client commands read CORRIGO_TARGET and CORRIGO_TOKEN (or --target, --token).",
    )
    root.add_argument("--version", action="version", version=f"corrigo {version}")
    root.set_defaults(help_of=root)
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    _add_server_commands(commands, command is None or command in SERVER_COMMANDS)

    whoami = commands.add_parser("whoami", help="show who the token belongs to")
    add_output(whoami)
    whoami.set_defaults(run=_whoami)
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script (bash or zsh)",
        description="Prints a completion script for every command and flag. Bash: save it "
        "as ~/.local/share/bash-completion/completions/corrigo; zsh: as _corrigo in a "
        "directory of $fpath.",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run=_completion)

    _add_transfers(commands)
    admin_cli.add_commands(commands)
    datasets_cli.add_commands(commands)
    correction_cli.add_commands(commands)
    practice_cli.add_commands(commands)
    improvement_cli.add_commands(commands)
    transfer_cli.add_commands(commands)
    return root


def _command_name(args: argparse.Namespace) -> str:
    words = [args.command or ""]
    words += [value for key, value in vars(args).items() if key.endswith("_command") and value]
    return " ".join(word for word in words if word)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), "")
    args = parser(command).parse_args(argv)
    if not hasattr(args, "run"):
        args.help_of.print_help()
        sys.exit(0)
    name = f"corrigo {_command_name(args)}"
    try:
        code = args.run(args)
    except UsageError as err:
        print(f"{name}: {err}", file=sys.stderr)
        code = err.status
    except grpc.RpcError as err:
        print(f"{name}: {explain(CorrigoError.from_rpc_error(err), args)}", file=sys.stderr)
        code = 1
    except ModuleNotFoundError as err:
        if args.command not in SERVER_COMMANDS:
            raise
        print(
            f"{name}: the server is not installed ({err.name} is missing): "
            "pip install 'corrigo[server]'",
            file=sys.stderr,
        )
        code = 1
    except BrokenPipeError:
        # The reader of standard output stopped (`| head`): not an error to report; stdout
        # is pointed at /dev/null so the interpreter's final flush fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{name}: {where}{err.strerror or err}; check the path", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
