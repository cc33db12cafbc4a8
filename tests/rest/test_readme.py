"""README's REST walkthrough, run as written with curl and jq against a fresh database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import ServerProcess, drop_scratch, environment, scratch_database
from tests.rest import gateway
from tests.rest.gateway import GatewayProcess

README = gateway.ROOT / "README.md"
# README's address of `make run-gateway`, replaced by the test gateway's.
README_API = "API=http://127.0.0.1:8080"
# Every curl of the walkthrough fails the run on an HTTP error, and ends its output's line.
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --silent --show-error "$@"; echo; }
"""


def walkthrough() -> str:
    """The `sh` blocks of README's REST section, in order, minus the build commands."""
    section = README.read_text().split("\n## REST\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return "\n".join(block for block in blocks if "make " not in block)


@pytest.fixture
def fresh_db(backend: str, db_url: str, tmp_path: Path) -> Iterator[str]:
    url = scratch_database(backend, tmp_path, db_url)
    yield url
    drop_scratch(url, db_url)


def test_the_rest_walkthrough_runs_as_written(fresh_db: str, tmp_path: Path) -> None:
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            gateway.unavailable(f"{tool} is not installed: README's REST walkthrough uses it")
    gateway.build()
    script = walkthrough()
    assert README_API in script
    server = ServerProcess(fresh_db, tmp_path / "server.log")
    try:
        server.wait_serving()
        front = GatewayProcess(server.target, tmp_path / "gateway.log")
        try:
            path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
            done = subprocess.run(
                ["bash", "-c", PRELUDE + script.replace(README_API, f"API={front.url}")],
                cwd=tmp_path,
                env=environment(CORRIGO_DATABASE_URL=fresh_db, PATH=path),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{front.log()}"
        finally:
            front.stop()
    finally:
        server.stop()
    answers = [line for line in done.stdout.splitlines() if line.startswith("{")]
    # Every document request answered; the release is the last.
    assert '"status":"RELEASED"' in answers[-1]
    assert sum('"status":"ok"' in answer for answer in answers) >= 8
