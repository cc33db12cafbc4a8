"""Fixtures: a real grpc.aio server on an ephemeral port, on SQLite and on PostgreSQL.

The PostgreSQL run uses CORRIGO_TEST_POSTGRES_URL. Locally it is skipped (with the
reason shown) when the variable is unset or no server answers; with
CORRIGO_REQUIRE_POSTGRES=1 (as in CI) it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from corrigo.client import AsyncClient
from corrigo.server.app import CorrigoServer
from corrigo.server.config import Config
from corrigo.server.store import identity
from corrigo.v1 import admin_pb2
from corrigo.v1.admin_pb2 import Member, User

POSTGRES_URL = os.environ.get("CORRIGO_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CORRIGO_REQUIRE_POSTGRES") == "1"
# The installed command, as a user runs it.
CORRIGO = str(Path(sys.executable).parent / "corrigo")


def _fresh_postgres(url: str) -> str | None:
    """Empty the test database's public schema; the reason when it cannot be reached."""
    try:
        import psycopg2

        conn = psycopg2.connect(url, connect_timeout=3)
    except Exception as err:
        return f"PostgreSQL at CORRIGO_TEST_POSTGRES_URL does not answer: {err}"
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    conn.close()
    return None


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'corrigo.sqlite3'}"
    problem = "CORRIGO_TEST_POSTGRES_URL is not set" if not POSTGRES_URL else None
    problem = problem or _fresh_postgres(POSTGRES_URL)
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL suite required: {problem}")
        pytest.skip(problem)
    return POSTGRES_URL


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return database_url(backend, tmp_path_factory.mktemp(backend))


@dataclass
class Running:
    server: CorrigoServer
    db_url: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def client(self, token: str | None = "") -> AsyncClient:
        return AsyncClient(self.target, token)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server(db_url: str) -> AsyncIterator[Running]:
    # Metrics on: every test goes through the metrics interceptor, and test_metrics scrapes.
    running = await CorrigoServer.start(
        Config(
            listen="127.0.0.1:0",
            database_url=db_url,
            grace_seconds=1,
            metrics_listen="127.0.0.1:0",
        )
    )
    yield Running(running, db_url)
    await running.stop(1)


@dataclass
class Org:
    """A freshly bootstrapped organization and ways to add people to it."""

    running: Running
    name: str
    admin_token: str
    admin: AsyncClient
    clients: list[AsyncClient] = field(default_factory=list)

    def client(self, token: str) -> AsyncClient:
        client = self.running.client(token)
        self.clients.append(client)
        return client

    def require_shared_database(self) -> None:
        """Skip unless the server's database is PostgreSQL, which several server processes
        can share (SQLite is the single-process embedded default)."""
        if not self.running.db_url.startswith("postgres"):
            pytest.skip(
                "needs PostgreSQL: several server processes share one database only there "
                "(SQLite is the single-process embedded default)"
            )

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """`corrigo args` as a process against the server, as the organization's admin:
        its exit code, stdout and stderr."""
        env = {
            **os.environ,
            "CORRIGO_TARGET": self.running.target,
            "CORRIGO_TOKEN": self.admin_token,
        }
        process = await asyncio.create_subprocess_exec(
            CORRIGO,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    async def user(self, role: int = User.MEMBER) -> tuple[int, AsyncClient]:
        """A new user of the organization with the organization role, and a client for them."""
        email = f"{uuid.uuid4().hex[:10]}@{self.name}.test"
        user = await self.admin.admin.CreateUser(
            admin_pb2.CreateUserRequest(user=User(email=email, role=role))
        )
        token = await self.admin.admin.CreateApiToken(
            admin_pb2.CreateApiTokenRequest(user_id=user.id, description="test")
        )
        return user.id, self.client(token.token)

    async def project(self, name: str | None = None) -> admin_pb2.Project:
        return await self.admin.admin.CreateProject(
            admin_pb2.CreateProjectRequest(
                project=admin_pb2.Project(name=name or f"p-{uuid.uuid4().hex[:8]}")
            )
        )

    async def member(self, project_id: int, role: int) -> tuple[int, AsyncClient]:
        """A new organization member holding `role` in the project."""
        user_id, client = await self.user()
        await self.admin.admin.SetMember(
            admin_pb2.SetMemberRequest(project_id=project_id, user_id=user_id, role=role)
        )
        return user_id, client


@contextlib.asynccontextmanager
async def bootstrapped(server: Running, prefix: str) -> AsyncIterator[Org]:
    """A fresh organization; its clients are closed at the end."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    _, _, token = await identity.bootstrap(name, f"admin@{name}.test")
    created = Org(server, name, token, server.client(token))
    try:
        yield created
    finally:
        for client in [created.admin, *created.clients]:
            await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def org(server: Running) -> AsyncIterator[Org]:
    async with bootstrapped(server, "org") as created:
        yield created


@pytest_asyncio.fixture(loop_scope="session")
async def other_org(server: Running) -> AsyncIterator[Org]:
    async with bootstrapped(server, "other") as created:
        yield created


ROLES = [Member.VIEWER, Member.ANNOTATOR, Member.EDITOR, Member.ADMIN]
