"""`corrigo sessions create | watch | list` as subprocesses against the test server."""

from __future__ import annotations

import json

import pytest

from corrigo.v1 import admin_pb2, correction_pb2
from tests import cli_helpers
from tests import correction_helpers as c
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def corrigo(org: Org, *args: str) -> tuple[int, str, str]:
    ran = await cli_helpers.corrigo(org, *args)
    return ran.code, ran.out, ran.err


async def _project_name(org: Org, project_id: int) -> str:
    project = await org.admin.admin.GetProject(admin_pb2.GetProjectRequest(project_id=project_id))
    return project.name


def columns(out: str, index: int) -> list[str]:
    return [line.split("\t")[index] for line in out.splitlines()]


async def test_cli_creates_watches_and_lists_sessions(org: Org) -> None:
    corpus = await c.corpus(org, 3)
    project, model = await _project_name(org, corpus.project_id), str(corpus.model_id)
    code, out, err = await org.cli(
        "sessions", "create", project, model, "--sample-size", "2", "--name", "cli", "--json"
    )
    assert code == 0, err
    created = json.loads(out)
    assert (created["status"], created["document_count"], created["name"]) == ("CREATED", 2, "cli")
    session_id = created["id"]
    await c.prepared(
        corpus,
        await corpus.annotator.corrections.GetCorrectionSession(
            correction_pb2.GetCorrectionSessionRequest(
                project_id=corpus.project_id, session_id=session_id
            )
        ),
    )
    for document in await c.documents(corpus, session_id):
        await c.correct(corpus, session_id, document.uid, "Comfort")

    # Every transition, one line each, until FINISHED.
    code, out, err = await org.cli("sessions", "watch", project, str(session_id))
    assert code == 0, err
    assert columns(out, 0) == ["1", "2", "3", "4", "5", "6"]
    assert columns(out, 2) == [
        "CREATED",
        "SAMPLING",
        "PREDICTING",
        "ANNOTATING",
        "ANNOTATING",
        "FINISHED",
    ]
    assert columns(out, 3) == ["0.0%", "0.0%", "0.0%", "0.0%", "50.0%", "100.0%"]
    assert columns(out, 4) == ["2 documents"] * 6
    code, out, err = await corrigo(org, "sessions", "watch", project, str(session_id), "--json")
    assert code == 0, err
    changes = [json.loads(line) for line in out.splitlines()]
    assert [c["version"] for c in changes] == [1, 2, 3, 4, 5, 6]
    assert changes[-1]["session"]["status"] == "FINISHED"

    code, out, err = await org.cli("sessions", "list", project)
    assert code == 0, err
    header, _, *rows = out.splitlines()
    assert header.split() == ["ID", "STATUS", "PROGRESS", "DOCUMENTS", "NAME"]
    assert [str(session_id), "FINISHED", "100.0%", "2", "cli"] in [row.split() for row in rows]
    code, out, _ = await corrigo(org, "sessions", "list", project, "--json")
    assert code == 0 and session_id in [s["id"] for s in json.loads(out)]
    code, out, _ = await corrigo(org, "sessions", "list", project, "--status", "annotating")
    assert code == 0 and len(out.splitlines()) == 2
    # A project's id is its name's equal; a name no project has says where to look.
    code, out, _ = await corrigo(org, "sessions", "list", str(corpus.project_id), "--json")
    assert code == 0 and session_id in [s["id"] for s in json.loads(out)]
    code, _, err = await corrigo(org, "sessions", "list", "no-such-project")
    assert code == 1 and "`corrigo projects list` shows them" in err

    # --watch follows the new session to its end: here FAILED (no model version).
    failing = await c.corpus(org, 2, score=None)
    code, out, err = await org.cli(
        "sessions",
        "create",
        await _project_name(org, failing.project_id),
        str(failing.model_id),
        "--strategy",
        "uncertainty",
        "--watch",
    )
    assert code == 1, err
    assert columns(out, 2) == ["CREATED", "SAMPLING", "PREDICTING", "FAILED"]
    assert out.splitlines()[-1].endswith("there are no predictions to correct")

    # Without --json, the new session as a table.
    code, out, err = await org.cli("sessions", "create", project, model, "--sample-size", "1")
    assert code == 0, err
    assert out.splitlines()[1].split() == ["STATUS", "CREATED"], out

    code, out, err = await corrigo(org, "sessions", "create", project, model, "--sample-size", "0")
    assert code == 2 and out == ""
    assert "--sample-size: must be 1..1000, got 0" in err
