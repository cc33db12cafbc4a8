"""README.md runs as written: its `sh`/`bash` and `python` blocks, in order, against a
fresh `corrigo serve` (SQLite, and PostgreSQL when CORRIGO_TEST_POSTGRES_URL is set).

Each shell block runs in bash with `set -euo pipefail` and every variable exported, so the
next block sees what the earlier ones set (as in one terminal); a Python block runs with
that environment. The server listens on a free port, so `127.0.0.1:50051` in the blocks is
replaced by its address; blocks run in a scratch directory that holds the server's SQLite
file, as `make run` serves ./corrigo.sqlite3. A block preceded by
`<!-- readme-test: skip (why) -->` is not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import processes
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES

README = Path(__file__).parent.parent / "README.md"
DOCUMENTED_TARGET = "127.0.0.1:50051"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!-- readme-test: skip \((.+?)\) -->\s*$")


@dataclass
class Block:
    line: int
    language: str
    code: str


def blocks(text: str) -> Iterator[Block]:
    """The blocks to run, in order: shell and Python ones not marked to skip."""
    for match in _FENCE.finditer(text):
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


def _run(block: Block, env: dict[str, str], cwd: Path, target: str) -> dict[str, str]:
    """Run one block; answers the environment after it (for shell blocks)."""
    code = block.code.replace(DOCUMENTED_TARGET, target)
    if block.language == "python":
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        after = env
    else:
        state = cwd / ".readme-env"
        script = f"set -euo pipefail\nset -a\n{code}\nenv -0 > {state}\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        after = env
        if done.returncode == 0:
            pairs = state.read_text().split("\0")
            after = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    if done.returncode != 0:
        pytest.fail(
            f"README.md line {block.line} ({block.language} block) failed with status "
            f"{done.returncode}\n--- block\n{code}\n--- stdout\n{done.stdout[-4000:]}\n"
            f"--- stderr\n{done.stderr[-4000:]}"
        )
    return after


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_readme_runs_as_written(backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL suite required: CORRIGO_TEST_POSTGRES_URL is not set")
        pytest.skip("CORRIGO_TEST_POSTGRES_URL is not set")
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
    try:
        server.wait_serving()
        for block in blocks(README.read_text()):
            env = _run(block, env, work, server.target)
    finally:
        server.stop()
        processes.drop_scratch(url, POSTGRES_URL)
