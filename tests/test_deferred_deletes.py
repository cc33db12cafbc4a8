"""Deferred deletes (`store.purge`): a deleted source or dataset is gone for every reader
at once and its name free, its rows are removed afterwards in bounded steps while other
writes answer, and a purge a server left unfinished is resumed by the next one."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import peewee
import pytest
from google.protobuf import field_mask_pb2
from playhouse.migrations import Runner

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.domain import purge_work
from corrigo.server.store import database, purge
from corrigo.server.store.database import MIGRATIONS, Sql
from corrigo.server.store.purge import Kind, Purge
from corrigo.v1 import admin_pb2, correction_pb2, datasets_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label
from corrigo.v1.correction_pb2 import CorrectionSession
from tests import correction_helpers as ch
from tests import dataset_helpers as h
from tests import migration_helpers as mh
from tests.conftest import POSTGRES_URL, Org
from tests.migration_helpers import scratch  # noqa: F401 (a fixture)
from tests.processes import ServerProcess, bootstrapped_server, drop_scratch, scratch_database

_ASYNC = pytest.mark.asyncio(loop_scope="session")


async def _scalar(sql: str, *params: Any) -> Any:
    """The first column of the first row of `sql`, read from the server's database."""
    return (await database.fetch(Sql(sql), params))[0][0]


async def _internal_id(table: str, hex_id: str) -> int:
    return int(await _scalar(f"SELECT id FROM {table} WHERE hex_id = ?", hex_id))


async def _purged(kind: str, row_id: int) -> None:
    """Wait until the purge of the row is done."""
    deadline = time.monotonic() + 60
    while await _scalar("SELECT COUNT(*) FROM purge WHERE kind = ? AND row_id = ?", kind, row_id):
        assert time.monotonic() < deadline, f"the purge of {kind} {row_id} did not finish"
        await asyncio.sleep(0.1)


def _comments(prefix: str, count: int) -> list[Any]:
    return [h.comment(f"{prefix}{i:06d}", i) for i in range(count)]


_COUNT = 'SELECT COUNT(*) FROM "comment" WHERE source_id = ?'


async def _inbox(org: Org, comments: int) -> tuple[str, int]:
    """A new project's source `inbox` with `comments` comments: the project's name and
    the source's internal id."""
    project = await org.project()
    await h.source(org.admin, project.name, "inbox")
    await h.sync(org.admin, project.name, "inbox", _comments("c", comments))
    source_id = await _scalar(
        "SELECT s.id FROM source AS s JOIN project AS p ON p.id = s.project_id "
        "WHERE p.name = ? AND s.name = 'inbox'",
        project.name,
    )
    return project.name, int(source_id)


@_ASYNC
async def test_a_deleted_source_is_gone_at_once_and_purged_while_writes_answer(org: Org) -> None:
    project = await org.project()
    owner = project.name
    doomed = await h.source(org.admin, owner, "inbox")
    kept = await h.source(org.admin, owner, "kept")
    await h.dataset(org.admin, owner, [doomed.id, kept.id])
    await h.sync(org.admin, owner, "inbox", _comments("c", 12_000))
    await h.sync(org.admin, owner, "kept", [h.comment("k")])
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["L"]))
    old_uid = f"{doomed.id}.c000001"
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="ds",
            comment_uid=old_uid,
            assigned=[Label(name="L", sentiment="positive")],
        )
    )
    source_id = await _internal_id("source", doomed.id)

    began = time.monotonic()
    await org.admin.sources.DeleteSource(
        sources_pb2.DeleteSourceRequest(owner=owner, name="inbox"), timeout=2
    )
    delete_seconds = time.monotonic() - began
    assert delete_seconds < 1, delete_seconds
    # The rows wait for the purge (12,000 comments take several steps)...
    assert await _scalar(_COUNT, source_id) > 0
    # ... but no reader sees them.
    with pytest.raises(CorrigoError) as err:
        await org.admin.sources.GetSource(sources_pb2.GetSourceRequest(owner=owner, name="inbox"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    listed = await org.admin.sources.ListSources(sources_pb2.ListSourcesRequest(owner=owner))
    assert [s.name for s in listed.sources] == ["kept"]
    got = await org.admin.datasets.GetDataset(
        datasets_pb2.GetDatasetRequest(owner=owner, name="ds")
    )
    assert list(got.dataset.source_ids) == [kept.id]
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    assert h.uids(pages) == [f"{kept.id}.k"]
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.GetLabelling(
            datasets_pb2.GetLabellingRequest(owner=owner, name="ds", comment_uid=old_uid)
        )
    assert err.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    # A dataset cannot take the deleted source back by its id.
    with pytest.raises(CorrigoError) as err:
        await h.dataset(org.admin, owner, [doomed.id], name="again")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT

    # The name is free at once: a new, empty source.
    again = await h.source(org.admin, owner, "inbox")
    assert again.id != doomed.id
    with pytest.raises(CorrigoError) as err:
        await org.admin.sources.GetComment(
            sources_pb2.GetCommentRequest(owner=owner, name="inbox", comment_id="c000001")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    # Other writes answer within a short deadline while the purge runs.
    for i in range(5):
        answer = await org.admin.sources.SyncComments(
            sources_pb2.SyncCommentsRequest(
                owner=owner, name="kept", comments=[h.comment(f"w{i}")]
            ),
            timeout=1,
        )
        assert answer.new == 1
    assert await _scalar("SELECT COUNT(*) FROM purge WHERE row_id = ?", source_id) == 1

    await _purged("source", source_id)
    assert await _scalar(_COUNT, source_id) == 0
    assert await _scalar("SELECT COUNT(*) FROM source WHERE id = ?", source_id) == 0
    assert (
        await _scalar(
            "SELECT COUNT(*) FROM labelling AS l WHERE NOT EXISTS "
            '(SELECT 1 FROM "comment" AS c WHERE c.id = l.comment_id)'
        )
        == 0
    )
    # Its project can be deleted once its sources are, purged or not.
    await org.admin.sources.DeleteSource(sources_pb2.DeleteSourceRequest(owner=owner, name="inbox"))
    await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=owner, name="ds")
    )
    await org.admin.sources.DeleteSource(sources_pb2.DeleteSourceRequest(owner=owner, name="kept"))
    await org.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=project.id))


@_ASYNC
async def test_a_deleted_or_removed_source_leaves_the_labelled_count_at_once(org: Org) -> None:
    project = await org.project()
    owner = project.name
    kept = await h.source(org.admin, owner, "kept")
    removed = await h.source(org.admin, owner, "removed")
    doomed = await h.source(org.admin, owner, "inbox")
    dataset = await h.dataset(org.admin, owner, [kept.id, removed.id, doomed.id])
    await h.sync(org.admin, owner, "kept", [h.comment("k0"), h.comment("k1")])
    await h.sync(org.admin, owner, "removed", [h.comment("r")])
    await h.sync(org.admin, owner, "inbox", _comments("c", 12_000))
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["L"]))
    # The deleted source's last comment: its purge removes it last, several steps later.
    labelled = [f"{kept.id}.k0", f"{kept.id}.k1", f"{removed.id}.r", f"{doomed.id}.c011999"]
    await org.admin.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(
            owner=owner,
            name="ds",
            labellings=[
                datasets_pb2.LabellingUpdate(
                    comment_uid=uid, assigned=[Label(name="L", sentiment="positive")]
                )
                for uid in labelled
            ],
        )
    )
    assert (await h.model_version(org.admin, owner, "ds")).labelled_documents == 4

    await org.admin.datasets.UpdateDataset(
        datasets_pb2.UpdateDatasetRequest(
            owner=owner,
            name="ds",
            dataset=datasets_pb2.Dataset(source_ids=[kept.id, doomed.id]),
            update_mask=field_mask_pb2.FieldMask(paths=["source_ids"]),
        )
    )
    source_id = await _internal_id("source", doomed.id)
    await org.admin.sources.DeleteSource(sources_pb2.DeleteSourceRequest(owner=owner, name="inbox"))
    assert (await h.model_version(org.admin, owner, "ds")).labelled_documents == 2
    # Counted while the labellings of both were still stored.
    stored = "SELECT COUNT(*) FROM labelling WHERE dataset_id = ?"
    assert await _scalar(stored, await _internal_id("dataset", dataset.id)) == 4

    await _purged("source", source_id)


@_ASYNC
async def test_a_deleted_dataset_is_gone_at_once_and_its_name_free(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.sync(org.admin, owner, "mailbox", _comments("c", 6000))
    await h.dataset(org.admin, owner, [src.id])
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["Old"]))
    for start in range(0, 6000, 4096):
        await org.admin.datasets.BatchUpdateLabellings(
            datasets_pb2.BatchUpdateLabellingsRequest(
                owner=owner,
                name="ds",
                labellings=[
                    datasets_pb2.LabellingUpdate(
                        comment_uid=f"{src.id}.c{i:06d}",
                        assigned=[Label(name="Old", sentiment="positive")],
                    )
                    for i in range(start, min(start + 4096, 6000))
                ],
            )
        )
    await h.model_version(org.admin, owner, "ds")
    old = await org.admin.datasets.GetDataset(
        datasets_pb2.GetDatasetRequest(owner=owner, name="ds")
    )
    dataset_id = await _internal_id("dataset", old.dataset.id)

    began = time.monotonic()
    await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=owner, name="ds"), timeout=2
    )
    assert time.monotonic() - began < 1
    assert await _scalar("SELECT COUNT(*) FROM labelling WHERE dataset_id = ?", dataset_id) > 0
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.GetDataset(datasets_pb2.GetDatasetRequest(owner=owner, name="ds"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    listed = await org.admin.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest())
    assert old.dataset.id not in [d.id for d in listed.datasets]

    # The name is free at once, and the new dataset shows nothing of the old one.
    new = await h.dataset(org.admin, owner, [src.id])
    assert new.id != old.dataset.id
    taxonomy = await org.admin.datasets.ListLabelDefs(
        datasets_pb2.ListLabelDefsRequest(owner=owner, name="ds")
    )
    assert list(taxonomy.label_defs) == []
    tags = await org.admin.datasets.ListModelTags(
        datasets_pb2.ListModelTagsRequest(owner=owner, name="ds")
    )
    assert list(tags.model_tags) == []
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=owner, name="ds", limit=256)
    )
    assert len(h.uids(pages)) == 6000
    assert not any(c.comment.has_annotations for p in pages for c in p.comments)

    await _purged("dataset", dataset_id)
    for table in ("labelling", "label_def", "model", "model_version", "dataset_source"):
        assert await _scalar(f"SELECT COUNT(*) FROM {table} WHERE dataset_id = ?", dataset_id) == 0
    assert await _scalar("SELECT COUNT(*) FROM dataset WHERE id = ?", dataset_id) == 0
    # The comments stay: they are the source's.
    assert (
        await _scalar(
            'SELECT COUNT(*) FROM "comment" WHERE source_id = ?',
            await _internal_id("source", src.id),
        )
        == 6000
    )


@_ASYNC
async def test_a_deleted_dataset_takes_its_correction_sessions_and_a_source_its_documents(
    org: Org,
) -> None:
    corpus = await ch.corpus(org, 10)
    session = await ch.prepared(corpus, await corpus.create(sample_size=3))
    assert session.status == CorrectionSession.ANNOTATING
    group = await org.admin.document_groups.CreateDocumentGroup(
        correction_pb2.CreateDocumentGroupRequest(
            project_id=corpus.project_id, name="all", document_uids=corpus.uids
        )
    )
    assert group.document_count == 10
    dataset = await org.admin.datasets.GetDataset(
        datasets_pb2.GetDatasetRequest(owner=corpus.owner, name="ds")
    )
    dataset_id = await _internal_id("dataset", dataset.dataset.id)

    await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=corpus.owner, name="ds")
    )
    with pytest.raises(CorrigoError) as err:
        await org.admin.corrections.GetCorrectionSession(
            correction_pb2.GetCorrectionSessionRequest(
                project_id=corpus.project_id, session_id=session.id
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    listed = await org.admin.corrections.ListCorrectionSessions(
        correction_pb2.ListCorrectionSessionsRequest(project_id=corpus.project_id)
    )
    assert list(listed.sessions) == []
    with pytest.raises(CorrigoError) as err:
        await corpus.create(sample_size=3)
    assert err.value.code == grpc.StatusCode.NOT_FOUND

    await org.admin.sources.DeleteSource(
        sources_pb2.DeleteSourceRequest(owner=corpus.owner, name="mailbox")
    )
    got = await org.admin.document_groups.GetDocumentGroup(
        correction_pb2.GetDocumentGroupRequest(project_id=corpus.project_id, group_id=group.id)
    )
    assert (got.document_count, list(got.document_uids)) == (0, [])
    await _purged("dataset", dataset_id)
    assert (
        await _scalar("SELECT COUNT(*) FROM correction_session WHERE dataset_id = ?", dataset_id)
        == 0
    )
    assert await _scalar("SELECT COUNT(*) FROM model WHERE dataset_id = ?", dataset_id) == 0


@_ASYNC
async def test_a_purge_runs_on_the_one_server_holding_its_lease(org: Org) -> None:
    owner, source_id = await _inbox(org, 12_000)
    await org.admin.sources.DeleteSource(sources_pb2.DeleteSourceRequest(owner=owner, name="inbox"))
    # Another replica cannot take a live lease...
    assert not await purge.take_lease(Kind.SOURCE, source_id, "another")
    # ... but takes it over once it runs out; this server's purge then stops at its next step.
    async with database.atomic():
        await database.write(
            Sql("UPDATE purge SET lease_until = ? WHERE kind = 'source' AND row_id = ?"),
            (
                Purge.lease_until.db_value(database.utcnow() - datetime.timedelta(seconds=1)),
                source_id,
            ),
        )
    assert await purge.take_lease(Kind.SOURCE, source_id, "another")
    await asyncio.sleep(0.5)
    left = await _scalar(_COUNT, source_id)
    await asyncio.sleep(1)
    assert 0 < await _scalar(_COUNT, source_id) == left
    # Released (the other replica stopped), the next sweep of any server resumes it.
    await purge.release_lease(Kind.SOURCE, source_id, "another")
    assert await purge_work.sweep() >= 1
    await _purged("source", source_id)
    assert await _scalar(_COUNT, source_id) == 0


@_ASYNC
async def test_slow_steps_remove_fewer_rows(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    _, source_id = await _inbox(org, 3600)
    # Doomed without starting the server's purge: this test steps it.
    await purge.doom_source(source_id)
    assert await purge.take_lease(Kind.SOURCE, source_id, "stepper")
    monkeypatch.setattr(purge, "STEP_SECONDS", 0.0)
    purging = purge.Purging(Kind.SOURCE, source_id, "stepper")
    left = []
    while await purging.step():
        left.append(await _scalar(_COUNT, source_id))
    # Every step is "slow": 2000 rows, then half as many each time.
    assert left == [1600, 600, 100, 0]
    assert await _scalar("SELECT COUNT(*) FROM source WHERE id = ?", source_id) == 0


# The purge pauses between steps, so 20,000 comments take a few seconds: long enough to
# stop the server in the middle.
_RESTART_COMMENTS = 20_000


def _count(url: str, sql: str) -> int:
    if url.startswith("sqlite"):
        lite = sqlite3.connect(database.sqlite_path(url))
        try:
            return int(lite.execute(sql).fetchone()[0])
        finally:
            lite.close()
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        conn.close()


@contextlib.contextmanager
def _scratch(backend: str, db_url: str, tmp_path: Path) -> Iterator[str]:
    url = scratch_database(backend, tmp_path, db_url if backend == "postgres" else POSTGRES_URL)
    try:
        yield url
    finally:
        drop_scratch(url, db_url)


@_ASYNC
async def test_a_purge_stopped_midway_resumes_when_a_server_starts(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    with _scratch(backend, db_url, tmp_path) as url:
        first, token = bootstrapped_server(url, tmp_path / "first.log", "pg")
        try:
            async with AsyncClient(first.target, token) as client:
                project = await client.admin.CreateProject(
                    admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="p"))
                )
                await h.source(client, project.name, "big")
                await h.sync(client, project.name, "big", _comments("c", _RESTART_COMMENTS))
                await client.sources.DeleteSource(
                    sources_pb2.DeleteSourceRequest(owner=project.name, name="big")
                )
        finally:
            assert first.stop() == 0
        left = _count(url, 'SELECT COUNT(*) FROM "comment"')
        assert 0 < left < _RESTART_COMMENTS
        assert _count(url, "SELECT COUNT(*) FROM purge WHERE lease_owner IS NULL") == 1
        second = ServerProcess(url, tmp_path / "second.log")
        try:
            second.wait_serving()
            deadline = time.monotonic() + 60
            while _count(url, "SELECT COUNT(*) FROM purge"):
                assert time.monotonic() < deadline, second.log()
                await asyncio.sleep(0.2)
        finally:
            second.stop()
        assert _count(url, 'SELECT COUNT(*) FROM "comment"') == 0
        assert _count(url, "SELECT COUNT(*) FROM source") == 0


def test_migration_0032_keeps_rows_counters_and_cascades(
    scratch: peewee.Database,  # noqa: F811
) -> None:
    db = scratch
    runner = Runner(db, str(MIGRATIONS))
    runner.up(target="0031_ids_never_reused")
    mh.project(db)
    mh.source(db, id=1)
    mh.comment(db, 1)
    for i in (1, 2):
        mh.dataset(db, f"d{i}", f"fedcba987654321{i}", id=i)
        mh.insert(db, "dataset_source", dataset_id=i, source_id=1, position=0)
    db.execute_sql("DELETE FROM dataset WHERE id = 2")
    assert runner.up(target="0032_deferred_deletes") == ["0032_deferred_deletes"]

    rows = db.execute_sql("SELECT id, project_id FROM dataset").fetchall()
    assert [tuple(r) for r in rows] == [(1, 1)]
    # A doomed row leaves its project, and its name is free.
    db.execute_sql("UPDATE dataset SET project_id = NULL WHERE id = 1")
    if isinstance(db, peewee.SqliteDatabase):
        # The rebuilt table's counter kept the id of the dataset deleted before it.
        mh.dataset(db, "d1", "00000000000000aa")
        named = db.execute_sql("SELECT id FROM dataset WHERE name = 'd1' AND project_id = 1")
        assert named.fetchone()[0] == 3
    else:  # the rows above were given their ids: the sequence has not moved
        mh.dataset(db, "d1", "00000000000000aa", id=3)
    db.execute_sql("UPDATE source SET project_id = NULL WHERE id = 1")
    mh.source(db, "0123456789abcdee", id=2)
    # The cascades reach the rebuilt tables.
    db.execute_sql("DELETE FROM source WHERE id = 1")
    assert db.execute_sql('SELECT COUNT(*) FROM "comment"').fetchone()[0] == 0
    assert db.execute_sql("SELECT COUNT(*) FROM dataset_source").fetchone()[0] == 0
    if isinstance(db, peewee.SqliteDatabase):
        assert db.execute_sql("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute_sql("PRAGMA integrity_check").fetchall() == [("ok",)]
