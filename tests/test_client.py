"""The client library against grpcio-testing's scripted channel (no server): the token
is sent, status details are decoded into CorrigoError, retries cover idempotent methods."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from corrigo.client import AsyncClient, Client, CorrigoError, api, channel
from corrigo.client.channel import service_config
from corrigo.v1 import admin_pb2, admin_pb2_grpc, options_pb2

ADMIN = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


class _Callable:
    """grpcio-testing's multicallables predate `wait_for_ready` and `compression`, which
    grpc.intercept_channel always passes; drop them."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def with_call(self, request: Any, **kwargs: Any) -> Any:
        kwargs.pop("wait_for_ready", None)
        kwargs.pop("compression", None)
        return self._inner.with_call(request, **kwargs)


class _Scripted:
    """The scripted channel as the client sees it, plus the test's side of it."""

    def __init__(self) -> None:
        self.testing = grpc_testing.channel([ADMIN], grpc_testing.strict_real_time())

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _Callable:
        kwargs.pop("_registered_method", None)
        return _Callable(self.testing.unary_unary(method, *args, **kwargs))

    def close(self) -> None:
        pass

    def take(self, method: str) -> Any:
        return self.testing.take_unary_unary(ADMIN.methods_by_name[method])


@pytest.fixture
def scripted() -> _Scripted:
    return _Scripted()


def test_calls_carry_the_bearer_token(scripted: _Scripted) -> None:
    client = Client("unused:1", "crg_7_secret", channel=scripted)  # type: ignore[arg-type]
    thread, outcome = _in_thread(lambda: client.admin.WhoAmI(admin_pb2.WhoAmIRequest()))
    metadata, _, rpc = scripted.take("WhoAmI")
    assert ("authorization", "Bearer crg_7_secret") in list(metadata)
    rpc.terminate(admin_pb2.WhoAmIResponse(token_id=7), (), grpc.StatusCode.OK, "")
    thread.join(5)
    assert outcome["value"].token_id == 7


def test_no_token_sends_no_authorization(
    scripted: _Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRIGO_TOKEN", raising=False)
    client = Client("unused:1", channel=scripted)  # type: ignore[arg-type]
    thread, _ = _in_thread(lambda: client.admin.WhoAmI(admin_pb2.WhoAmIRequest()))
    metadata, _, rpc = scripted.take("WhoAmI")
    assert "authorization" not in dict(metadata)
    rpc.terminate(admin_pb2.WhoAmIResponse(), (), grpc.StatusCode.OK, "")
    thread.join(5)


def test_token_and_target_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRIGO_TOKEN", "crg_1_env")
    monkeypatch.setenv("CORRIGO_TARGET", "corrigo.internal:443")
    client = Client()
    assert (client.target, client.token) == ("corrigo.internal:443", "crg_1_env")
    client.close()


def test_failures_raise_corrigo_error_with_details(scripted: _Scripted) -> None:
    client = Client("unused:1", "crg_1_x", channel=scripted)  # type: ignore[arg-type]
    thread, outcome = _in_thread(
        lambda: client.admin.CreateProject(admin_pb2.CreateProjectRequest())
    )
    _, _, rpc = scripted.take("CreateProject")
    info, bad = any_pb2.Any(), any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="INVALID_REQUEST", domain="corrigo.v1"))
    bad.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="project.name", description="required"
                )
            ]
        )
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="project.name: required", details=[info, bad]
    )
    rpc.terminate(
        None,
        (("grpc-status-details-bin", status.SerializeToString()),),
        grpc.StatusCode.INVALID_ARGUMENT,
        "project.name: required",
    )
    thread.join(5)
    error = outcome["error"]
    assert isinstance(error, CorrigoError) and isinstance(error, grpc.RpcError)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert error.field_violations == [("project.name", "required")]
    assert error.fields == ["project.name"]


def test_retries_exactly_the_rpcs_the_protos_declare_retried() -> None:
    """The service config names every RPC declared RETRY_IDEMPOTENT or RETRY_REQUEST_ID,
    and no other; UNAVAILABLE is the one code retried."""
    config = json.loads(service_config())
    (method_config,) = config["methodConfig"]
    retried = {f"{n['service']}.{n['method']}" for n in method_config["name"]}
    declared = {
        m.full_name
        for m in api.methods()
        if channel.retry_of(m) in (options_pb2.RETRY_IDEMPOTENT, options_pb2.RETRY_REQUEST_ID)
    }
    assert retried == declared
    assert {
        "corrigo.v1.AdminService.GetProject",
        "corrigo.v1.AdminService.CreateProject",
    } <= retried
    assert {
        "corrigo.v1.AdminService.CreateApiToken",
        "corrigo.v1.PracticeSessionService.AppendEvents",
    }.isdisjoint(retried)
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_creates_carry_a_fresh_request_id_and_keep_the_callers(scripted: _Scripted) -> None:
    client = Client("unused:1", "crg_1_x", channel=scripted)  # type: ignore[arg-type]
    sent = []
    for request in (
        admin_pb2.CreateProjectRequest(),
        admin_pb2.CreateProjectRequest(),
        admin_pb2.CreateProjectRequest(request_id="8d6f3d3e-5b1c-4f0e-9a39-2b1a1f0c9e11"),
    ):
        thread, _ = _in_thread(lambda: client.admin.CreateProject(request))  # noqa: B023
        _, received, rpc = scripted.take("CreateProject")
        rpc.terminate(admin_pb2.Project(), (), grpc.StatusCode.OK, "")
        thread.join(5)
        sent.append(received.request_id)
        assert not request.request_id or request.request_id == sent[-1]
    assert all(str(uuid.UUID(request_id)) == request_id for request_id in sent)
    assert len(set(sent)) == 3
    assert sent[2] == "8d6f3d3e-5b1c-4f0e-9a39-2b1a1f0c9e11"


class _UnavailableOnce(admin_pb2_grpc.AdminServiceServicer):
    """Answers UNAVAILABLE to each RPC's first attempt, then OK; counts the attempts and
    keeps the request ids they carried."""

    def __init__(self) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()
        self.request_ids: list[str] = []

    async def _attempt(self, name: str, context: grpc.aio.ServicerContext) -> None:
        self.attempts[name] += 1
        if self.attempts[name] == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    async def GetProject(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._attempt("GetProject", context)
        return admin_pb2.Project(id=request.project_id)

    async def CreateProject(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.request_ids.append(request.request_id)
        await self._attempt("CreateProject", context)
        return admin_pb2.Project(id=1)

    async def CreateApiToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._attempt("CreateApiToken", context)
        return admin_pb2.CreateApiTokenResponse()


async def test_retried_rpcs_are_sent_again_after_unavailable_and_the_others_are_not() -> None:
    servicer = _UnavailableOnce()
    server = grpc.aio.server()
    admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = AsyncClient(f"127.0.0.1:{port}", "crg_1_x")
    try:
        await client.admin.GetProject(admin_pb2.GetProjectRequest(project_id=3))  # idempotent
        await client.admin.CreateProject(admin_pb2.CreateProjectRequest())  # by request id
        with pytest.raises(CorrigoError) as error:  # never retried
            await client.admin.CreateApiToken(admin_pb2.CreateApiTokenRequest())
        assert error.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        await client.close()
        await server.stop(None)
    assert servicer.attempts == {"GetProject": 2, "CreateProject": 2, "CreateApiToken": 1}
    # Both attempts of the create carried the same id: the server acts once.
    first, second = servicer.request_ids
    assert first and first == second


def test_client_commands_do_not_import_the_server() -> None:
    """`corrigo whoami` (and every command but serve, migrate and admin) loads neither
    corrigo.server nor the database libraries."""
    probe = (
        "import sys\n"
        "from corrigo.client import cli\n"
        "for argv in (['whoami'], ['export', 'a/b', '-o', '-'], ['sync', 'a/b', 'f'],"
        " ['projects', 'list'], ['--help']):\n"
        "    try:\n"
        "        cli.parser(argv[0]).parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('loaded:', sorted(m for m in sys.modules if m.startswith('corrigo.server') or "
        "m.split('.')[0] in ('peewee', 'playhouse', 'asyncpg', 'aiosqlite', 'psycopg2')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines()[-1] == "loaded: []", done.stdout
    # And the command itself, end to end: no token, so it stops before any call.
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "corrigo.client.cli", "whoami"],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("CORRIGO_")},
    )  # fmt: skip
    assert "no API token" in imports.stderr
    loaded = {line.split("|")[-1].strip() for line in imports.stderr.splitlines() if "|" in line}
    assert "corrigo.client.cli_support" in loaded
    assert not {m for m in loaded if m.startswith(("corrigo.server", "peewee", "asyncpg"))}
