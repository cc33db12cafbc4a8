"""`corrigo sync` and `corrigo export` as subprocesses against the test server, and the
client's resuming export iterator."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from corrigo.client import Client, export
from corrigo.client.export import export_pages, export_to_file, result_json
from corrigo.client.sync import SyncTotals, sync_file
from corrigo.v1 import datasets_pb2
from tests import cli_helpers
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _corrigo(org: Org, *args: str) -> tuple[int, str, str]:
    ran = await cli_helpers.corrigo(org, *args)
    return ran.code, ran.out, ran.err


def _state(out: Path) -> Any:
    """The resume state `corrigo export` keeps next to its output, if any."""
    path = out.with_name(out.name + ".export-state")
    return json.loads(path.read_text()) if path.exists() else None


async def _filled(org: Org, tmp_path: Path, n: int) -> tuple[str, str]:
    """A project with source `mailbox` and dataset `ds`, `n` comments synced by the CLI."""
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    lines = [
        json_format.MessageToJson(h.comment(f"c{i}", i, f"text {i}"), indent=None) for i in range(n)
    ]
    data = tmp_path / "comments.jsonl"
    data.write_text("\n".join(lines) + "\n")
    code, _, err = await org.cli(
        "sync", f"{project.name}/mailbox", str(data), "--chunk-size", "100"
    )
    assert code == 0, err
    # The totals alone: stderr is no terminal, so no progress bar.
    assert err == f"{n} new, 0 updated, 0 unchanged in {(n + 99) // 100} chunks\n"
    return project.name, src.id


async def _expected_lines(org: Org, owner: str) -> list[str]:
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    return [result_json(c) for page in pages for c in page.comments]


async def test_cli_sync_then_export_jsonl_and_csv(org: Org, tmp_path: Path) -> None:
    owner, source_id = await _filled(org, tmp_path, 450)
    expected = await _expected_lines(org, owner)
    assert len(expected) == 450

    out = tmp_path / "export.jsonl"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(out), "--limit", "64")
    assert code == 0, err
    assert out.read_text().splitlines() == expected
    # No progress bar where stderr is no terminal: only the count at the end.
    assert err == f"450 comments written to {out}\n"
    assert _state(out) is None

    # Syncing the export's own lines back changes nothing.
    code, _, err = await org.cli("sync", f"{owner}/mailbox", str(out), "-q")
    assert code == 0 and "0 new, 0 updated, 450 unchanged" in err, err

    table = tmp_path / "export.csv"
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(table), "--format", "csv",
        "--source-id", source_id, "--from", "2020-01-01T00:01:00Z", "-q",
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.reader(table.open()))
    assert rows[0][:3] == ["uid", "source_id", "id"]
    assert [r[2] for r in rows[1:]] == [f"c{i}" for i in range(60, 450)]
    assert rows[1][7] == "text 60" and rows[1][8] == "a@b.c"


async def test_cli_errors_are_reported(org: Org, tmp_path: Path) -> None:
    project = await org.project()
    code, _, err = await org.cli("export", f"{project.name}/nope", "-o", str(tmp_path / "x"))
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await org.cli("export", "no-slash", "-o", str(tmp_path / "x"))
    assert code == 2 and "OWNER/NAME" in err


class _Interrupted(Exception):
    pass


class _BreakingStub:
    """Passes the real stream through, and fails after `pages` pages of the first call."""

    def __init__(self, real: Any, pages: int, error: BaseException) -> None:
        self.real, self.pages, self.error, self.calls = real, pages, error, 0

    def StreamExportDataset(self, request: Any) -> Iterator[Any]:
        self.calls += 1
        for i, page in enumerate(self.real.StreamExportDataset(request)):
            if self.calls == 1 and i == self.pages:
                raise self.error
            yield page


class _BreakingSync:
    """Passes the real sync stream through, and fails after `acks` acknowledgements of the
    first call (the chunks after them may have been committed, or not)."""

    def __init__(self, real: Any, acks: int) -> None:
        self.real, self.acks, self.calls = real, acks, 0

    def StreamSyncComments(self, requests: Iterator[Any]) -> Iterator[Any]:
        self.calls += 1
        call = self.real.StreamSyncComments(requests)
        for i, ack in enumerate(call):
            if self.calls == 1 and i == self.acks:
                call.cancel()
                raise _Unavailable()
            yield ack


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the connection broke"

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ()


async def test_interrupted_export_resumes_where_it_stopped(org: Org, tmp_path: Path) -> None:
    owner, _ = await _filled(org, tmp_path, 300)
    expected = await _expected_lines(org, owner)
    out = tmp_path / "resumed.jsonl"
    request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=32)

    def interrupted() -> None:
        with Client(org.running.target, org.admin_token) as client:
            stub = _BreakingStub(client.datasets, 3, _Interrupted())
            with pytest.raises(_Interrupted):
                export_to_file(stub, request, out, "jsonl", progress=False, checkpoint_seconds=0)  # type: ignore[arg-type]

    await asyncio.to_thread(interrupted)
    state = _state(out)
    assert state is not None
    assert state["written"] == 96
    # A page half written when the process died is cut off on resume.
    with out.open("a") as partial:
        partial.write('{"comment": {"id": "half')
    # Other arguments than the interrupted export's: refused, unless --restart.
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(out), "--limit", "64")
    assert code == 1 and "--restart" in err
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(out), "--limit", "32")
    assert code == 0, err
    assert out.read_text().splitlines() == expected
    assert err == f"300 comments written to {out}\n"
    assert _state(out) is None


async def test_export_pages_resume_after_unavailable(org: Org, tmp_path: Path) -> None:
    owner, _ = await _filled(org, tmp_path, 100)
    expected = await _expected_lines(org, owner)

    def read() -> tuple[list[str], int]:
        with Client(org.running.target, org.admin_token) as client:
            stub = _BreakingStub(client.datasets, 2, _Unavailable())
            request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=10)
            lines = [result_json(c) for page in export_pages(stub, request) for c in page.comments]  # type: ignore[arg-type]
            return lines, stub.calls

    lines, calls = await asyncio.to_thread(read)
    assert calls == 2
    assert lines == expected


async def test_sync_sends_unacknowledged_chunks_again_after_unavailable(
    org: Org, tmp_path: Path
) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    data = tmp_path / "comments.jsonl"
    lines = [json_format.MessageToJson(h.comment(f"c{i}", i), indent=None) for i in range(250)]
    data.write_text("\n".join(lines) + "\n")

    def run() -> tuple[SyncTotals, int]:
        with Client(org.running.target, org.admin_token) as client:
            stub = _BreakingSync(client.sources, 1)
            totals = sync_file(stub, project.name, "mailbox", data, chunk_size=20, progress=False)  # type: ignore[arg-type]
            return totals, stub.calls

    totals, calls = await asyncio.to_thread(run)
    assert calls == 2
    # Every chunk acknowledged once; a chunk committed but not acknowledged came back
    # unchanged the second time.
    assert totals.chunks == 13
    assert totals.new + totals.unchanged == 250 and totals.new >= 20
    page = await org.admin.datasets.ExportDataset(
        datasets_pb2.ExportDatasetRequest(owner=project.name, name="ds", limit=256)
    )
    assert sorted(r.comment.id for r in page.comments) == sorted(f"c{i}" for i in range(250))


@pytest.mark.parametrize(
    ("fmt", "compiled", "workers"),
    [("jsonl", True, False), ("jsonl", False, True), ("csv", True, True)],
    ids=["jsonl-in-c", "jsonl-in-python", "csv"],
)
async def test_large_exports_encoded_in_python_use_worker_processes(
    org: Org,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    compiled: bool,
    workers: bool,
) -> None:
    """Past PARALLEL_FROM, what is encoded in Python (CSV, or JSONL where the C writer is
    not built) goes to worker processes; JSONL written in C stays in this process. The
    file is the same either way."""
    owner, _ = await _filled(org, tmp_path, 300)
    request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=16)
    if not compiled:
        monkeypatch.setattr(export.records, "compiled_lines", None)
    pools: list[str] = []
    spawn = export.multiprocessing.get_context

    def get_context(method: str) -> Any:
        pools.append(method)
        return spawn(method)

    monkeypatch.setattr(export.multiprocessing, "get_context", get_context)

    def run(out: Path) -> int:
        with Client(org.running.target, org.admin_token) as client:
            return export_to_file(client.datasets, request, out, fmt, progress=False)

    alone = tmp_path / f"alone.{fmt}"
    assert await asyncio.to_thread(run, alone) == 300
    assert pools == []
    monkeypatch.setattr(export, "PARALLEL_FROM", 1)
    parallel = tmp_path / f"parallel.{fmt}"
    assert await asyncio.to_thread(run, parallel) == 300
    assert pools == (["spawn"] if workers else [])
    assert parallel.read_bytes() == alone.read_bytes()
    if fmt == "jsonl":
        assert alone.read_text().splitlines() == await _expected_lines(org, owner)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_exports_are_byte_stable(org: Org, tmp_path: Path, fmt: str) -> None:
    """Comments with many properties (a map whose order of iteration is seeded per
    process), exported by separate processes, and once interrupted and resumed: the same
    bytes every time, properties in sorted order."""
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    comments = []
    for i in range(120):
        made = h.comment(f"c{i}", i)
        made.user_properties.update({f"string:k{(i * 7 + n) % 30:02d}": f"v{n}" for n in range(30)})
        comments.append(made)
    await h.sync(org.admin, owner, "mailbox", comments)
    outputs = [tmp_path / f"run{n}.{fmt}" for n in range(3)]
    for out in outputs[:2]:
        code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(out), "--format", fmt,
            "--limit", "16", "-q")  # fmt: skip
        assert code == 0, err
    resumed = outputs[2]
    request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=16)

    def interrupted() -> None:
        with Client(org.running.target, org.admin_token) as client:
            stub = _BreakingStub(client.datasets, 3, _Interrupted())
            with pytest.raises(_Interrupted):
                export_to_file(stub, request, resumed, fmt, progress=False, checkpoint_seconds=0)  # type: ignore[arg-type]

    if fmt != "parquet":  # (a Parquet export saves its state per row group: tested apart)
        await asyncio.to_thread(interrupted)
        assert _state(resumed) is not None
    code, _, err = await org.cli("export", f"{owner}/ds", "-o", str(resumed), "--format", fmt,
        "--limit", "16", "-q")  # fmt: skip
    assert code == 0, err
    first, *others = [out.read_bytes() for out in outputs]
    assert all(other == first for other in others)
    if fmt == "jsonl":
        keys = list(json.loads(first.splitlines()[5])["comment"]["user_properties"])
        assert keys == sorted(keys) and len(keys) == 30
