"""OpenTelemetry traces (tests/tracing_probe.py runs the server in a process of its own,
as tracing is set up once per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import tracing_probe
from tests.processes import environment


@pytest.fixture
def probe_db(backend: str, db_url: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'probe.sqlite3'}" if backend == "sqlite" else db_url


def _probe(mode: str, url: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in environment().items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.tracing_probe", mode, url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_a_server_without_tracing_imports_no_opentelemetry(probe_db: str) -> None:
    found, _ = _probe("plain", probe_db)
    assert found == {"opentelemetry_modules": []}


def test_calls_statements_and_background_steps_are_spans(probe_db: str) -> None:
    found, stderr = _probe("traced", probe_db)
    spans = found["spans"]
    by_id = {span["span_id"]: span for span in spans}

    # The call under the caller's trace context: a server span, child of the caller's.
    whoami = [s for s in spans if s["name"] == "/corrigo.v1.AdminService/WhoAmI"]
    under_caller = [s for s in whoami if s["trace_id"] == tracing_probe.TRACE_ID]
    assert len(under_caller) == 1 and len(whoami) > 1  # the corpus builder calls it too
    call = under_caller[0]
    assert call["kind"] == "SERVER"
    assert call["parent_id"] == tracing_probe.PARENT_ID
    assert call["attributes"]["rpc.service"] == "corrigo.v1.AdminService"
    # Its database statements are its children (authentication reads the token's row).
    statements = [s for s in spans if s["parent_id"] == call["span_id"]]
    assert statements and all("db.statement" in s["attributes"] for s in statements)
    assert all(s["attributes"]["db.system"] in ("sqlite", "postgresql") for s in statements)

    # A write: a transaction span under the call's span.
    create = next(s for s in spans if s["name"] == "/corrigo.v1.AdminService/CreateProject")
    assert create["trace_id"] != tracing_probe.TRACE_ID  # no caller context: a trace of its own
    assert any(s["name"] == "transaction" and s["parent_id"] == create["span_id"] for s in spans)

    # The session's background steps belong to the trace of the call that created it.
    created = next(
        s
        for s in spans
        if s["name"] == "/corrigo.v1.CorrectionSessionService/CreateCorrectionSession"
    )
    steps = [s for s in spans if s["name"].startswith("correction session: ")]
    assert {s["name"] for s in steps} >= {
        "correction session: starting",
        "correction session: sampling",
        "correction session: attaching predictions",
    }
    for step in steps:
        assert step["trace_id"] == created["trace_id"]
        assert step["parent_id"] == created["span_id"]
        assert step["attributes"]["corrigo.attempt"] == 1
    # A step's own statements are its children.
    assert any(
        by_id.get(s["parent_id"], {}).get("name", "").startswith("correction") for s in spans
    )

    # Probes make no traces, and database work is never a trace of its own (the
    # readiness check's, the sweeper's).
    assert not [s for s in spans if s["name"].startswith("/grpc.health.v1.Health/")]
    database = [s for s in spans if "db.system" in s["attributes"]]
    assert database and all(s["parent_id"] for s in database)

    # The access line of the traced call carries its trace id.
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "corrigo.access"]
    traced = [line for line in access if line["method"] == "/corrigo.v1.AdminService/WhoAmI"]
    assert traced and traced[0]["trace_id"] == tracing_probe.TRACE_ID
