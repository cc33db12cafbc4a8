"""`corrigo export --follow`: the file grows with each change, Ctrl-C and the same command
resume it, and `corrigo sync` reads it back."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import field_mask_pb2

from corrigo.v1 import datasets_pb2, sources_pb2
from tests import cli_helpers, processes
from tests import dataset_helpers as h
from tests.cli_helpers import corrigo
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _complete_lines(path: Path) -> list[Any]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


async def _lines(path: Path, count: int) -> list[Any]:
    """The file's JSON lines once it has `count` of them (within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        lines = _complete_lines(path)
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"{path} holds {len(lines)} lines, not {count}"
        await asyncio.sleep(0.05)


async def _follow(org: Org, owner: str, out: Path) -> asyncio.subprocess.Process:
    # Ctrl-C as in a terminal: a shell's background job (as CI runs) inherits SIGINT
    # ignored, so the command is started with it restored.
    restored = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    env = {"CORRIGO_TARGET": org.running.target, "CORRIGO_TOKEN": org.admin_token}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", restored,
        cli_helpers.CORRIGO, "export", f"{owner}/ds", "-o", str(out), "--follow", "--limit", "2",
        env={**processes.environment(), **env},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _stopped(org: Org, owner: str, process: asyncio.subprocess.Process, nudge: str) -> str:
    """Ctrl-C: the command stops after the next message (a change, `nudge` synced)."""
    process.send_signal(signal.SIGINT)
    await h.sync(org.admin, owner, "mailbox", [h.comment(nudge, 50)])
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, err.decode()
    return err.decode()


async def test_export_follow_writes_each_change_and_resumes(org: Org, tmp_path: Path) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    await h.sync(org.admin, owner, "mailbox", [h.comment(f"c{i}", i) for i in range(3)])
    out = tmp_path / "feed.jsonl"

    first = await _follow(org, owner, out)
    snapshot = await _lines(out, 3)
    assert [line["comment"]["id"] for line in snapshot] == ["c0", "c1", "c2"]
    await h.sync(org.admin, owner, "mailbox", [h.comment("c3", 3)])
    await org.admin.sources.DeleteComments(
        sources_pb2.DeleteCommentsRequest(owner=owner, name="mailbox", ids=["c0"])
    )
    live = (await _lines(out, 5))[3:]
    assert live == [
        {**live[0], "comment": {**live[0]["comment"], "id": "c3"}},
        {"deleted_uid": f"{src.id}.c0"},
    ]
    err = await _stopped(org, owner, first, "c4")
    assert "run the same command again to resume" in err.splitlines()[-1]

    second = await _follow(org, owner, out)
    await h.sync(org.admin, owner, "mailbox", [h.comment("c5", 5)])
    written = await _lines(out, 7)
    await _stopped(org, owner, second, "c6")
    ids = [line["comment"]["id"] if "comment" in line else line for line in written[:7]]
    assert ids == ["c0", "c1", "c2", "c3", {"deleted_uid": f"{src.id}.c0"}, "c4", "c5"]

    # The file syncs back: the deleted comment's line is skipped.
    await h.source(org.admin, owner, "copy")
    synced = await corrigo(org, "sync", f"{owner}/copy", str(out), "-q")
    assert synced.code == 0, synced.err
    comments = {line["comment"]["id"] for line in await _lines(out, 7) if "comment" in line}
    assert f"{len(comments)} new, 0 updated, 0 unchanged" in synced.err


async def test_export_follow_is_jsonl_only(org: Org, tmp_path: Path) -> None:
    ran = await corrigo(
        org, "export", "someone/ds", "-o", str(tmp_path / "x.csv"), "--format", "csv", "--follow"
    )
    assert ran.code == 2 and "--follow writes JSONL only" in ran.line()


async def test_export_follow_writes_a_reset_and_the_new_view(org: Org, tmp_path: Path) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    other = await h.source(org.admin, owner, "other")
    await h.dataset(org.admin, owner, [src.id])
    await h.sync(org.admin, owner, "mailbox", [h.comment("c0", 0)])
    await h.sync(org.admin, owner, "other", [h.comment("o0", 1)])
    out = tmp_path / "feed.jsonl"

    following = await _follow(org, owner, out)
    assert [line["comment"]["id"] for line in await _lines(out, 1)] == ["c0"]
    await org.admin.datasets.UpdateDataset(
        datasets_pb2.UpdateDatasetRequest(
            owner=owner,
            name="ds",
            dataset=datasets_pb2.Dataset(source_ids=[src.id, other.id]),
            update_mask=field_mask_pb2.FieldMask(paths=["source_ids"]),
        )
    )
    written = await _lines(out, 4)
    await _stopped(org, owner, following, "c1")
    assert written[1] == {"reset": True}
    assert sorted(line["comment"]["id"] for line in written[2:4]) == ["c0", "o0"]

    # The file syncs back: the reset's line is skipped.
    await h.source(org.admin, owner, "copy")
    synced = await corrigo(org, "sync", f"{owner}/copy", str(out), "-q")
    assert synced.code == 0, synced.err
    assert "3 new, 0 updated" in synced.err


async def test_a_comment_twice_in_a_file_syncs_its_later_line(org: Org, tmp_path: Path) -> None:
    project = await org.project()
    await h.source(org.admin, project.name)
    lines = [{"id": "c0", "timestamp": "2021-01-01T00:00:00Z", "messages": [{"body": {"text": t}}]}
             for t in ("first", "second")]  # fmt: skip
    path = tmp_path / "twice.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    synced = await corrigo(org, "sync", f"{project.name}/mailbox", str(path), "-q")
    assert synced.code == 0, synced.err
    assert "1 new, 1 updated, 0 unchanged" in synced.err
    got = await org.admin.sources.GetComment(
        sources_pb2.GetCommentRequest(owner=project.name, name="mailbox", comment_id="c0")
    )
    assert got.comment.messages[0].body.text == "second"
