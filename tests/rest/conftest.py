"""One Corrigo server process per backend with the gateway in front, shared by the REST
tests; each test module works in an organization of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.processes import ServerProcess, bootstrap
from tests.rest import gateway
from tests.rest.gateway import GatewayProcess, Rest


@dataclass
class Stack:
    """A server process, the gateway in front of it, and the database they use."""

    server: ServerProcess
    gateway: GatewayProcess
    db_url: str

    def organization(self, prefix: str) -> Rest:
        """A freshly bootstrapped organization, as its admin calls it."""
        name = gateway.unique(prefix)
        return Rest(self.gateway.url, bootstrap(self.db_url, name, f"admin@{name}.test"))


@pytest.fixture(scope="session")
def stack(backend: str, db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway.build()
    logs = tmp_path_factory.mktemp(f"rest-{backend}")
    url = f"sqlite:///{logs / 'rest.sqlite3'}" if backend == "sqlite" else db_url
    server = ServerProcess(url, logs / "server.log")
    try:
        server.wait_serving()
        front = GatewayProcess(server.target, logs / "gateway.log")
        try:
            yield Stack(server, front, url)
        finally:
            front.stop()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(stack: Stack, request: pytest.FixtureRequest) -> Rest:
    """The admin of an organization of the test module's own."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return stack.organization(name.replace("_", "-"))
