"""The client library against grpcio-testing's scripted channel (no server): the token
is sent, status details are decoded into CorrigoError, retries cover idempotent methods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import grpc
import grpc_testing
import pytest
from google.api import annotations_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from corrigo.client import Client, CorrigoError, channel
from corrigo.client.channel import service_config
from corrigo.v1 import admin_pb2

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


def test_retries_only_idempotent_methods() -> None:
    config = json.loads(service_config())
    (method_config,) = config["methodConfig"]
    retried = {name["method"] for name in method_config["name"]}
    assert {"WhoAmI", "GetProject", "ListProjects", "SetMember", "DeleteProject"} <= retried
    assert {"CreateProject", "CreateUser", "CreateApiToken"}.isdisjoint(retried)
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_retries_follow_the_http_verb_or_the_table() -> None:
    """Every GET/PUT/DELETE is retried, a POST or PATCH only when IDEMPOTENT_POSTS lists
    it; the table names methods that exist."""
    config = json.loads(service_config())
    retried = {f"{n['service']}.{n['method']}" for n in config["methodConfig"][0]["name"]}
    methods = {
        method.full_name: method.GetOptions().Extensions[annotations_pb2.http]
        for file in channel.FILES
        for service in file.services_by_name.values()
        for method in service.methods
    }
    assert methods.keys() >= channel.IDEMPOTENT_POSTS
    for name, rule in methods.items():
        verb = rule.WhichOneof("pattern")
        expected = verb in ("get", "put", "delete") or name in channel.IDEMPOTENT_POSTS
        assert (name in retried) == expected, name
    assert "corrigo.v1.CorrectionSessionService.WatchCorrectionSession" in retried
    assert "corrigo.v1.ImprovementService.ReleaseBatch" not in retried


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
