"""Secrets: tokens never reach logs or error messages, are stored only as hashes, and an
unexpected database failure answers INTERNAL with an id, never SQL or a stack."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import grpc
import psycopg2
import pytest

from corrigo.client import Client, CorrigoError
from corrigo.v1 import admin_pb2
from tests.reliability import report
from tests.reliability.conftest import Served


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            return conn.execute(statement).fetchall()
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(statement)
        rows = cursor.fetchall() if cursor.description else []
    conn.close()
    return rows


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tokens_never_reach_logs_or_messages_and_are_stored_hashed(
    served: Served, backend: str, log_format: str
) -> None:
    target = served.server.target
    messages: list[str] = []
    with Client(target, served.token) as admin:
        created = admin.admin.CreateApiToken(admin_pb2.CreateApiTokenRequest(description="rel"))
        admin.admin.WhoAmI(admin_pb2.WhoAmIRequest())
        admin.admin.RevokeApiToken(admin_pb2.RevokeApiTokenRequest(token_id=created.api_token.id))
        try:
            admin.admin.CreateProject(admin_pb2.CreateProjectRequest())
        except CorrigoError as err:
            messages.append(err.message)
    token_id = served.token.split("_")[1]
    wrong_secret = f"crg_{token_id}_{'s' * 43}"
    attempts = [created.token, wrong_secret, "crg_424242_" + "q" * 43, "Bearer-less-" + "z" * 30]
    for token in attempts:
        with Client(target, token) as client:
            with pytest.raises(CorrigoError) as err:
                client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            messages.append(err.value.message)
    log = served.server.log()
    if log_format == "json":
        _check_json_lines(log)
    secrets = [served.token, created.token, *attempts]
    for secret in secrets:
        # The secret part whole: token_urlsafe may itself hold "_", and a short fragment
        # could turn up in a log by chance.
        tail = secret.split("_", 2)[2] if secret.startswith("crg_") else secret
        assert tail not in log
        for message in messages:
            assert tail not in message
    stored = _sql(served.database_url, "SELECT id, secret_hash FROM api_token")
    dumped = repr(stored)
    for secret in (served.token, created.token):
        token_id_text, secret_part = secret.split("_")[1], secret.split("_", 2)[2]
        assert secret_part not in dumped
        assert (int(token_id_text), hashlib.sha256(secret_part.encode()).hexdigest()) in stored
    report.record("secrets", backend, calls=3 + len(attempts) + 1)


def _check_json_lines(log: str) -> None:
    """Every line is one JSON object; access lines carry the call's fields."""
    lines = [json.loads(line) for line in log.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "corrigo.access"]
    fields = {"method", "code", "duration_ms", "principal", "peer", "trace_id"}
    assert access and all(fields <= set(line) for line in access)
    codes = {(line["method"], line["code"]) for line in access}
    assert ("/corrigo.v1.AdminService/WhoAmI", "OK") in codes
    assert ("/corrigo.v1.AdminService/WhoAmI", "UNAUTHENTICATED") in codes


def test_database_failure_answers_internal_without_sql_or_stack(
    served: Served, backend: str
) -> None:
    with Client(served.server.target, served.token) as admin:
        admin.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="doomed"))
        )
        _sql(served.database_url, "ALTER TABLE project RENAME TO project_gone")
        try:
            with pytest.raises(CorrigoError) as err:
                admin.admin.ListProjects(admin_pb2.ListProjectsRequest())
        finally:
            _sql(served.database_url, "ALTER TABLE project_gone RENAME TO project")
    assert err.value.code == grpc.StatusCode.INTERNAL
    assert err.value.reason == "INTERNAL_ERROR"
    error_id = err.value.error_metadata["error_id"]
    assert err.value.message == f"internal error (error id {error_id})"
    log = served.server.log()
    assert f"error id {error_id}" in log and "Traceback" in log
    report.record("secrets", backend, calls=2)
