"""The `corrigo` command on bad input and in bad situations, against a real server: it
never hangs and never shows a traceback; it says in one line what is wrong, where, and
what to do, and exits non-zero."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from corrigo.client import Client, cli
from corrigo.v1 import admin_pb2, datasets_pb2, practice_pb2, sources_pb2
from tests import cli_helpers, processes
from tests import dataset_helpers as h
from tests.cli_helpers import Ran, corrigo
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES, Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _user_error(ran: Ran, command: str) -> str:
    """The one line a failed command prints; checks there is no traceback."""
    assert ran.code != 0, ran
    assert "Traceback" not in ran.err, ran.err
    line = ran.line()
    assert line.startswith(f"corrigo {command}: "), ran.err
    return line


def _comment_line(comment_id: str, **extra: object) -> str:
    data = json_format.MessageToDict(h.comment(comment_id, 1))
    data.update(extra)
    return json.dumps(data)


async def _source(org: Org) -> str:
    """A new project with source `mailbox` and dataset `ds` over it; answers its name."""
    project = await org.project()
    await h.dataset(org.admin, project.name, [(await h.source(org.admin, project.name)).id])
    return project.name


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("not json", r"not JSON \(Expecting value at column 1\)"),
        # A line without its closing brace: the column where the parser stopped.
        (
            _comment_line("x")[:-1],
            rf"not JSON \(Expecting ',' delimiter at column {len(_comment_line('x'))}, "
            r"the end of the line\)",
        ),
        (
            _comment_line("x", timestamp="yesterday"),
            r"timestamp: expected a time such as 2024-01-01T10:00:00Z \(RFC 3339, with Z or "
            r'an offset such as \+02:00\), got "yesterday"',
        ),
        ("[1, 2]", r"expected a JSON object \(a Comment\), got an array"),
        (_comment_line("x", thread="t", form="f"), "unknown fields form, thread"),
    ],
)
async def test_sync_stops_at_a_bad_line_and_names_it(
    org: Org, tmp_path: Path, bad: str, problem: str
) -> None:
    owner = await _source(org)
    data = tmp_path / "comments.jsonl"
    lines = [_comment_line(f"c{i}") for i in range(25)]
    data.write_text("\n".join([*lines[:3], "", *lines[3:], bad, _comment_line("after")]) + "\n")
    ran = await corrigo(org, "sync", f"{owner}/mailbox", str(data), "--chunk-size", "10")
    line = _user_error(ran, "sync")
    # Line 27: the blank line counts; every line before the bad one was stored.
    assert re.match(rf"corrigo sync: {data}:27: {problem}", line), line
    assert "25 comments before it were stored" in line and "run again" in line
    # On its own line, after the progress bar.
    assert ran.err.endswith(line + "\n")
    page = await org.admin.datasets.ExportDataset(
        datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    assert len(page.comments) == 25
    again = await corrigo(org, "sync", f"{owner}/mailbox", str(data), "-q")
    assert "25 comments before it were stored" in _user_error(again, "sync")


async def test_sync_names_the_line_of_a_comment_the_server_refuses(
    org: Org, tmp_path: Path
) -> None:
    owner = await _source(org)
    data = tmp_path / "comments.jsonl"
    lines = [_comment_line(f"c{i}") for i in range(23)] + [_comment_line("bad id!")]
    data.write_text("\n".join(lines) + "\n")
    ran = await corrigo(org, "sync", f"{owner}/mailbox", str(data), "--chunk-size", "10", "-q")
    line = _user_error(ran, "sync")
    assert line.startswith(f"corrigo sync: {data}:24: id: required"), line
    assert "20 comments before it were stored" in line


async def test_sync_of_what_is_not_a_file(org: Org, tmp_path: Path) -> None:
    owner = await _source(org)
    missing = await corrigo(org, "sync", f"{owner}/mailbox", str(tmp_path / "nope.jsonl"))
    assert _user_error(missing, "sync").endswith(
        "nope.jsonl: No such file or directory; check the path"
    )
    directory = await corrigo(org, "sync", f"{owner}/mailbox", str(tmp_path), "-q")
    assert "Is a directory" in _user_error(directory, "sync")
    unknown = await corrigo(org, "sync", "no-such-project/mailbox", str(tmp_path))
    assert "Is a directory" in _user_error(unknown, "sync")


async def test_export_arguments_and_outputs(org: Org, tmp_path: Path) -> None:
    owner = await _source(org)
    await h.sync(org.admin, owner, "mailbox", [h.comment(f"c{i}", i) for i in range(30)])
    to_stdout = await corrigo(org, "export", f"{owner}/ds", "-o", "-", "-q", cwd=tmp_path)
    assert to_stdout.code == 0, to_stdout.err
    assert len(to_stdout.out.splitlines()) == 30 and not (tmp_path / "-").exists()
    assert json.loads(to_stdout.out.splitlines()[0])["comment"]["id"] == "c0"

    nowhere = await corrigo(org, "export", f"{owner}/ds", "-o", "/nonexistent/dir/x.jsonl")
    assert "/nonexistent/dir/x.jsonl: No such file or directory" in _user_error(nowhere, "export")

    too_many = await corrigo(org, "export", f"{owner}/ds", "-o", "-", "--limit", "1000")
    assert too_many.code == 2 and "--limit: must be 1..256, got 1000" in too_many.err
    helped = await corrigo(org, "export", "--help")
    assert "comments per page, 1..256" in " ".join(helped.out.split())

    backwards = await corrigo(
        org, "export", f"{owner}/ds", "-o", "-",
        "--from", "2024-02-01T00:00:00Z", "--to", "2024-01-01T00:00:00Z",
    )  # fmt: skip
    assert "--from 2024-02-01T00:00:00Z is after --to" in _user_error(backwards, "export")
    assert backwards.code == 2

    stranger = await corrigo(org, "export", "no-such-project/ds", "-o", "-")
    assert "project 'no-such-project' not found" in _user_error(stranger, "export")

    # A first call that fails leaves no file and shows no progress bar.
    missing = await corrigo(org, "export", f"{owner}/nope", "-o", str(tmp_path / "nope.jsonl"))
    assert _user_error(missing, "export") == (
        f"corrigo export: NOT_FOUND: dataset {owner}/nope not found; "
        f"`corrigo datasets list {owner}` shows what there is"
    )
    assert missing.err.count("\n") == 1 and not (tmp_path / "nope.jsonl").exists()
    # A server that cannot be reached is waited for, saying so, up to --wait seconds.
    started = time.monotonic()
    down = await corrigo(
        org, "export", f"{owner}/ds", "-o", str(tmp_path / "down.jsonl"), "--wait", "2",
        CORRIGO_TARGET=f"127.0.0.1:{processes.free_port()}",
    )  # fmt: skip
    assert 2 <= time.monotonic() - started < 10
    waited = re.findall(
        r"waiting for (\S+) \(UNAVAILABLE\), retry (\d) in (\d) s; Ctrl-C to stop", down.err
    )
    assert [retry for _, retry, _ in waited] == ["1", "2"], down.err
    assert "UNAVAILABLE: cannot reach" in _user_error(down, "export")
    assert not (tmp_path / "down.jsonl").exists()

    no_token = await corrigo(org, "export", f"{owner}/ds", "-o", "-", token="")
    assert "set CORRIGO_TOKEN or pass --token" in _user_error(no_token, "export")
    bad_token = await corrigo(org, "whoami", token="crg_1_nonsense")
    assert "UNAUTHENTICATED" in _user_error(bad_token, "whoami")


async def test_ctrl_c_during_export_says_how_to_resume(org: Org, tmp_path: Path) -> None:
    owner = await _source(org)
    await h.sync(org.admin, owner, "mailbox", [h.comment(f"c{i}", i) for i in range(2000)])
    out = tmp_path / "out.jsonl"
    env = {"CORRIGO_TARGET": org.running.target, "CORRIGO_TOKEN": org.admin_token}
    # Ctrl-C as in a terminal: a shell's background job (as CI runs) inherits SIGINT
    # ignored, so the command is started with it restored.
    restored = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", restored,
        cli_helpers.CORRIGO, "export", f"{owner}/ds", "-o", str(out), "--limit", "1",
        env={**processes.environment(), **env},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not out.exists() or not out.stat().st_size:  # the first page is written
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130
    assert "run the same command again to resume" in err.decode().splitlines()[-1]
    resumed = await corrigo(org, "export", f"{owner}/ds", "-o", str(out), "--limit", "1", "-q")
    assert resumed.code == 0 and len(out.read_text().splitlines()) == 2000


async def test_batch_sessions_without_a_batch_or_a_good_token(org: Org) -> None:
    none_active = await corrigo(org, "batch", "sessions")
    assert _user_error(none_active, "batch sessions") == (
        "corrigo batch sessions: NOT_FOUND: no active batch"
    )
    bad = await corrigo(org, "batch", "sessions", token="crg_1_nonsense")
    assert "UNAUTHENTICATED" in _user_error(bad, "batch sessions")


async def test_practice_show_prints_integers_as_integers(org: Org) -> None:
    agent = await org.admin.catalog.CreatePracticeAgent(
        practice_pb2.CreatePracticeAgentRequest(agent=practice_pb2.PracticeAgent(name="Helper"))
    )
    klass = await org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=practice_pb2.PracticeClass(name="Support", model_names=["m"])
        )
    )
    body = json_format.ParseDict(
        {"class_id": klass.class_id, "agent_id": agent.agent_id, "title": "t"},
        practice_pb2.CreatePracticeSessionRequest(),
    )
    session = await org.admin.practice.CreatePracticeSession(body)
    shown = await corrigo(org, "practice", "show", str(session.session_id), "--json")
    assert shown.code == 0, shown.err
    assert f'"agent_id": {agent.agent_id},' in shown.out
    assert not re.search(r"\d\.0\b", shown.out), shown.out


async def test_a_client_that_goes_away_is_logged_cancelled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corrigo.sqlite3'}"
    token = processes.bootstrap(url, "acme", "admin@acme.example")
    server = processes.ServerProcess(url, tmp_path / "server.log")
    try:
        server.wait_serving()

        def interrupted_exports() -> None:
            with Client(server.target, token) as client:
                client.admin.CreateProject(
                    admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="p"))
                )
                source = client.sources.CreateSource(
                    sources_pb2.CreateSourceRequest(owner="p", name="mailbox")
                )
                client.datasets.CreateDataset(
                    datasets_pb2.CreateDatasetRequest(
                        owner="p",
                        name="ds",
                        dataset=datasets_pb2.Dataset(source_ids=[source.source.id]),
                    )
                )
                for first in range(0, 3000, 1000):
                    comments = [
                        h.comment(f"c{i}", i, "x" * 500) for i in range(first, first + 1000)
                    ]
                    client.sources.SyncComments(
                        sources_pb2.SyncCommentsRequest(
                            owner="p", name="mailbox", comments=comments
                        )
                    )
                for _ in range(3):
                    stream = client.datasets.StreamExportDataset(
                        datasets_pb2.StreamExportDatasetRequest(owner="p", name="ds", limit=16)
                    )
                    next(stream)
                    stream.cancel()

        await asyncio.to_thread(interrupted_exports)
        deadline = time.monotonic() + 10
        while server.log().count("StreamExportDataset code=CANCELLED") < 3:
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.2)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "Traceback" not in log and "ExecuteBatchError" not in log, log
    assert "code=UNKNOWN" not in log


async def test_serve_exits_at_once_when_it_cannot_listen_or_read_its_database_url(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'corrigo.sqlite3'}"
    server = processes.ServerProcess(url, tmp_path / "server.log")
    try:
        server.wait_serving()
        started = time.monotonic()
        taken = processes.corrigo("serve", "--listen", server.target, "--database", url, timeout=30)
        assert time.monotonic() - started < 20
        assert taken.returncode == 1 and "Traceback" not in taken.stderr
        # Its own line alone, one that works for `make run` too (not grpc's E... add_port).
        assert taken.stderr.splitlines()[-1] == (
            f"corrigo serve: cannot listen on {server.target} (in use, or not an address of "
            "this host); pass --listen HOST:PORT, or set CORRIGO_LISTEN (as "
            "`CORRIGO_LISTEN=127.0.0.1:50052 make run`)"
        )
        assert "add_port" not in taken.stderr and "E1204" not in taken.stderr, taken.stderr
    finally:
        server.stop()
    no_tls = processes.corrigo(
        "serve", "--listen", f"127.0.0.1:{processes.free_port()}", "--database", url,
        "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
        timeout=30,
    )  # fmt: skip
    assert no_tls.returncode == 1 and "Traceback" not in no_tls.stderr
    assert no_tls.stderr.splitlines()[-1].startswith(
        "corrigo serve: cannot read the TLS key or certificate: "
    )
    for bad in ("mysql://x", "corrigo.sqlite3", "sqlite://relative"):
        refused = processes.corrigo("serve", "--database", bad, timeout=30)
        assert refused.returncode == 2, refused.stderr
        assert f"{bad!r} is not a database URL: use sqlite:///PATH or postgresql://" in (
            refused.stderr
        )
    # A bad number in the environment is a usage error naming the flag, not a traceback.
    for name, flag in (
        ("GRACE_SECONDS", "--grace"),
        ("MAX_CONCURRENT_RPCS", "--max-concurrent-rpcs"),
    ):
        bad_env = processes.corrigo("serve", timeout=30, **{f"CORRIGO_{name}": "abc"})
        assert bad_env.returncode == 2 and "Traceback" not in bad_env.stderr
        assert bad_env.stderr.splitlines()[-1].startswith(
            f"corrigo serve: argument {flag}: invalid"
        )


@pytest.mark.postgres
async def test_migrate_a_postgresql_database_that_does_not_exist() -> None:
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL suite required: CORRIGO_TEST_POSTGRES_URL is not set")
        pytest.skip("CORRIGO_TEST_POSTGRES_URL is not set")
    missing = POSTGRES_URL.rsplit("/", 1)[0] + "/corrigo_no_such_database"
    for command in (["migrate"], ["serve", "--listen", f"127.0.0.1:{processes.free_port()}"]):
        ran = processes.corrigo(*command, "--database", missing, timeout=30)
        assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
        assert ran.stderr.splitlines()[-1] == (
            f"corrigo {command[0]}: cannot open the database {missing}: database "
            '"corrigo_no_such_database" does not exist; check --database (env '
            "CORRIGO_DATABASE_URL) and that the database exists (createdb NAME for PostgreSQL)"
        )


async def test_bootstrap_says_which_database_it_writes(tmp_path: Path) -> None:
    bootstrap = ("admin", "bootstrap", "--org", "acme", "--email", "a@acme.example")
    elsewhere = await corrigo(None, *bootstrap, cwd=tmp_path)
    assert _user_error(elsewhere, "admin bootstrap").startswith(
        f"corrigo admin bootstrap: no database at {tmp_path / 'corrigo.sqlite3'}"
    )
    assert "--database URL (env CORRIGO_DATABASE_URL)" in elsewhere.err
    assert not (tmp_path / "corrigo.sqlite3").exists()
    url = f"sqlite:///{tmp_path / 'corrigo.sqlite3'}"
    made = await corrigo(None, *bootstrap, cwd=tmp_path, CORRIGO_DATABASE_URL=url)
    assert made.code == 0, made.err
    assert made.out.startswith("crg_")
    assert f"created in {tmp_path / 'corrigo.sqlite3'}" in made.err
    wrong = await corrigo(None, *bootstrap, cwd=tmp_path, CORRIGO_DATABASE_URL="mysql://x")
    assert "CORRIGO_DATABASE_URL: 'mysql://x' is not a database URL" in _user_error(
        wrong, "admin bootstrap"
    )
    # Then the default finds it, from its directory.
    again = await corrigo(
        None, "admin", "bootstrap", "--org", "beta", "--email", "b@beta.example", cwd=tmp_path
    )
    assert again.code == 0, again.err


async def test_help_and_version() -> None:
    alone = processes.corrigo()
    assert alone.returncode == 0 and alone.stdout.startswith("usage: corrigo")
    assert "sync" in alone.stdout and "export" in alone.stdout
    version = processes.corrigo("--version")
    assert version.returncode == 0 and re.fullmatch(r"corrigo \d+\.\d+\.\d+\S*\n", version.stdout)
    typo = processes.corrigo("projectz")
    assert typo.returncode == 2 and len(typo.stderr.splitlines()) == 1
    assert typo.stderr.startswith("corrigo: argument COMMAND: invalid choice: 'projectz'")
    assert typo.stderr.rstrip().endswith("; see corrigo --help")
    group = processes.corrigo("batch")
    assert group.returncode == 0 and group.stdout.startswith("usage: corrigo batch")


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command of the tree, groups and leaves (argparse keeps them in its actions)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _commands(sub)


async def test_every_command_has_an_example_and_the_exit_statuses_are_documented() -> None:
    tree = list(_commands(cli.parser()))
    assert len(tree) > 60
    for command in tree:
        help_text = command.format_help()
        example = re.search(r"\nexample:\n  (.+)\n", help_text)
        assert example, command.prog
        # The example runs the command it documents (or, for a group, one of its own).
        assert (
            example.group(1).split("corrigo", 1)[1].startswith(command.prog.removeprefix("corrigo"))
        ), (command.prog, example.group(1))
    root = cli.parser().format_help()
    assert "exit status:" in root
    for status in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {status}" in root, status


async def test_shell_completion_scripts() -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "#compdef corrigo")):
        script = processes.corrigo("completion", shell)
        assert script.returncode == 0, script.stderr
        assert marker in script.stdout
        for word in ("sessions", "export", "--json", "--wait", "bootstrap"):
            assert word in script.stdout, (shell, word)
    wrong = processes.corrigo("completion", "fish")
    assert wrong.returncode == 2 and "invalid choice: 'fish'" in wrong.stderr


async def test_a_command_waits_for_a_server_that_comes_up(tmp_path: Path) -> None:
    """A server not up yet is waited for, a line per retry, and the command then runs."""
    url = f"sqlite:///{tmp_path / 'corrigo.sqlite3'}"
    token = processes.bootstrap(url, "acme", "admin@acme.example")
    target = f"127.0.0.1:{processes.free_port()}"
    waiting = asyncio.create_task(
        corrigo(
            None, "whoami", "--json", "--wait", "30", CORRIGO_TARGET=target, CORRIGO_TOKEN=token
        )
    )
    await asyncio.sleep(2.5)
    serve = [*processes.CORRIGO, "serve", "--listen", target, "--database", url]
    server = processes.LoggedProcess(serve, tmp_path / "server.log")
    try:
        ran = await waiting
    finally:
        server.stop()
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["organization"]["name"] == "acme"
    # Seen within a retry or two of the server's start (every 2 s at most).
    assert len(ran.err.splitlines()) <= 6, ran.err
    lines = ran.err.splitlines()
    assert lines[:2] == [
        f"waiting for {target} (UNAVAILABLE), retry 1 in 1 s; Ctrl-C to stop",
        f"waiting for {target} (UNAVAILABLE), retry 2 in 2 s; Ctrl-C to stop",
    ], ran.err
