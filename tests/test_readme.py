"""README.md runs as written: its `sh`/`bash` and `python` blocks, in order, against a
fresh `corrigo serve` (SQLite, and PostgreSQL when CORRIGO_TEST_POSTGRES_URL is set).

The shell blocks run in one bash process with `set -euo pipefail`, as typed into one
terminal; a Python block runs with that shell's exported environment. The server listens
on a free port, so `127.0.0.1:50051` in the blocks is replaced by its address; blocks run
in a scratch directory that holds the server's SQLite file, as `make run` serves
./corrigo.sqlite3. A block preceded by `<!-- readme-test: skip (why) -->` is not run.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from corrigo.client import api
from tests import processes
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES

README = Path(__file__).parent.parent / "README.md"
DOCUMENTED_TARGET = "127.0.0.1:50051"
REST_SECTION = "\n## REST\n"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!-- readme-test: skip \((.+?)\) -->\s*$")


@dataclass
class Block:
    line: int
    language: str
    code: str


def blocks(text: str) -> Iterator[Block]:
    """The blocks to run, in order: shell and Python ones not marked to skip, outside the
    REST section (tests/rest/test_readme.py runs that one, with the gateway in front)."""
    rest = text.index(REST_SECTION)
    rest_end = text.index("\n## ", rest + len(REST_SECTION))
    for match in _FENCE.finditer(text):
        if rest <= match.start() < rest_end:
            continue
        language = match.group(1)
        if language not in ("sh", "bash", "python"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if _SKIP.search(before):
            continue
        yield Block(text.count("\n", 0, match.start()) + 1, language, match.group(2))


def test_readme_blocks_are_found() -> None:
    found = list(blocks(README.read_text()))
    assert {b.language for b in found} == {"sh", "python"}
    assert len(found) >= 12
    skipped = _SKIP.findall(README.read_text())
    assert len(skipped) <= 2, skipped


class Terminal:
    """One bash process fed the shell blocks one after the other, as a terminal would be:
    shell variables persist between blocks, and only exported ones reach the Python blocks
    (run as separate processes with the shell's environment). `set -euo pipefail`, so the
    first failing command ends the shell, and the block it was in fails."""

    _DONE = "@@readme-block-done@@"

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.errors = cwd.parent / "shell-stderr.log"
        self._stderr = open(self.errors, "w")  # noqa: SIM115 - closed in close()
        self.shell = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd, env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )  # fmt: skip
        self.env = dict(env)
        self._send("set -euo pipefail")

    def _send(self, code: str) -> str:
        """Run `code`; answers its output, or fails with it when the shell exits."""
        assert self.shell.stdin is not None and self.shell.stdout is not None
        state = self.cwd.parent / "shell-env"
        self.shell.stdin.write(f"{code}\nenv -0 > {state}\necho {self._DONE}\n")
        self.shell.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.shell.stdout], [], [], 1)
            if not ready:
                continue
            line = self.shell.stdout.readline()
            if line.strip() == self._DONE:
                pairs = state.read_text().split("\0")
                self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
                return "".join(output)
            if not line:
                raise AssertionError(
                    f"the shell exited with status {self.shell.wait()}\n--- stdout\n"
                    f"{''.join(output)[-4000:]}\n--- stderr\n{self.errors.read_text()[-4000:]}"
                )
            output.append(line)
        raise AssertionError(f"no end after 120 s\n--- stdout\n{''.join(output)[-4000:]}")

    def run(self, block: Block, target: str) -> None:
        code = block.code.replace(DOCUMENTED_TARGET, target)
        try:
            if block.language == "python":
                done = subprocess.run(
                    [sys.executable, "-c", code],
                    cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120,
                    check=False,
                )  # fmt: skip
                assert done.returncode == 0, (
                    f"status {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n"
                    f"--- stderr\n{done.stderr[-4000:]}"
                )
            else:
                self._send(code)
        except AssertionError as failure:
            pytest.fail(
                f"README.md line {block.line} ({block.language} block) failed: {failure}\n"
                f"--- block\n{code}"
            )

    def close(self) -> None:
        if self.shell.poll() is None:
            assert self.shell.stdin is not None
            self.shell.stdin.close()
            self.shell.wait(30)
        self._stderr.close()


def test_the_terminal_keeps_shell_variables_and_fails_a_failing_block(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    terminal = Terminal(work, processes.environment())
    try:
        terminal.run(Block(1, "sh", "X=1\nexport Y=2\n"), "-")
        terminal.run(Block(2, "python", "import os\nassert os.environ['Y'] == '2'\n"), "-")
        with pytest.raises(pytest.fail.Exception, match=r"line 3 \(python block\)"):
            terminal.run(Block(3, "python", "import os\nos.environ['X']\n"), "-")
        with pytest.raises(pytest.fail.Exception, match=r"line 4 \(sh block\)"):
            terminal.run(Block(4, "sh", 'test "$X" = 1\nfalse\necho never\n'), "-")
    finally:
        terminal.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_readme_runs_as_written(backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL suite required: CORRIGO_TEST_POSTGRES_URL is not set")
        pytest.skip("CORRIGO_TEST_POSTGRES_URL is not set")
    if shutil.which("jq") is None:
        # The tour reads ids out of answers with jq; CI installs it (.ci/run).
        if os.environ.get("CI"):
            pytest.fail("jq is not installed: README's tour uses it")
        pytest.skip("jq is not installed: README's tour uses it (apt-get install jq)")
    # A database of its own (the session's server keeps the test database); on SQLite the
    # file the blocks' `corrigo admin bootstrap` finds in their directory.
    work = tmp_path / "work"
    work.mkdir()
    url = processes.scratch_database(backend, tmp_path, POSTGRES_URL)
    if backend == "sqlite":
        url = f"sqlite:///{work / 'corrigo.sqlite3'}"
    env = processes.environment(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if backend == "postgres":
        env["CORRIGO_DATABASE_URL"] = url
    server = processes.ServerProcess(url, tmp_path / "server.log", grace=1)
    terminal = None
    try:
        server.wait_serving()
        terminal = Terminal(work, env)
        for block in blocks(README.read_text()):
            terminal.run(block, server.target)
    finally:
        if terminal is not None:
            terminal.close()
        server.stop()
        processes.drop_scratch(url, POSTGRES_URL)


def _int64_fields() -> set[str]:
    """`Message.field` of every 64-bit integer field of the API (the JSON mapping writes
    them as strings)."""
    wide = {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
    found: set[str] = set()
    pending = [m for file in api.files() for m in file.message_types_by_name.values()]
    seen: set[str] = set()
    while pending:
        message = pending.pop()
        if message.full_name in seen or not message.full_name.startswith("corrigo."):
            continue
        seen.add(message.full_name)
        pending.extend(message.nested_types)
        for field in message.fields:
            if field.type in wide:
                found.add(f"{message.name}.{field.name}")
            if field.message_type is not None:
                pending.append(field.message_type)
    return found


def test_readme_names_every_field_rest_writes_as_a_string() -> None:
    rest = README.read_text().split(REST_SECTION, 1)[1]
    strings = rest[: rest.index("\n## ")]
    fields = _int64_fields()
    assert "StreamExportDatasetResponse.total" in fields
    for name in fields:
        message, field = name.split(".")
        assert f"`{name}`" in strings or (
            f"`{field}` of" in strings and f"`{message}`" in strings
        ), name


def test_readme_blocks_work_with_their_output_redirected() -> None:
    """A block's output is the reader's to redirect (`> log 2>&1`): none writes to a
    terminal device of its own."""
    text = README.read_text()
    for device in ("/dev/stderr", "/dev/stdout", "/dev/tty"):
        assert device not in text, device
