"""Fixtures for the reliability suite: server processes on databases of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL
from tests.processes import ServerProcess, bootstrap, drop_scratch, scratch_database


@pytest.fixture
def scratch_db(backend: str, db_url: str, tmp_path: Path) -> Iterator[str]:
    url = scratch_database(backend, tmp_path, db_url if backend == "postgres" else POSTGRES_URL)
    yield url
    drop_scratch(url, db_url)


@dataclass
class Served:
    server: ServerProcess
    token: str
    org: str
    database_url: str


@pytest.fixture
def log_format() -> str:
    """The served server's --log-format (a test parametrizes it to try both)."""
    return "text"


@pytest.fixture
def served(scratch_db: str, tmp_path: Path, log_format: str) -> Iterator[Served]:
    """`corrigo serve` on a scratch database, with a bootstrapped organization."""
    org = f"rel-{uuid.uuid4().hex[:8]}"
    token = bootstrap(scratch_db, org, f"admin@{org}.test")
    server = ServerProcess(
        scratch_db,
        tmp_path / "server.log",
        extra=["--log-level", "DEBUG", "--log-format", log_format],
    )
    try:
        server.wait_serving()
        yield Served(server, token, org, scratch_db)
    finally:
        server.stop()
