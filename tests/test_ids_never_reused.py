"""Ids are never reused, on either backend (migration 0031 on SQLite), so a resource
created again never accepts its predecessor's page tokens or continuations."""

from __future__ import annotations

import sqlite3

import grpc
import peewee
import pytest
from playhouse.migrations import Runner

from corrigo.client import CorrigoError
from corrigo.server.store import database
from corrigo.server.store.database import MIGRATIONS
from corrigo.v1 import admin_pb2, correction_pb2, datasets_pb2, practice_pb2, sources_pb2
from corrigo.v1.practice_pb2 import PracticeEvent
from tests import correction_helpers as ch
from tests import dataset_helpers as h
from tests import migration_helpers as mh
from tests.conftest import Org
from tests.migration_helpers import scratch  # noqa: F401 (a fixture)

_ASYNC = pytest.mark.asyncio(loop_scope="session")


def _rows(db: peewee.Database, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in db.execute_sql(sql).fetchall()]


def _world(db: peewee.Database) -> None:
    """An organization with a user, a project with two datasets over a source with a
    comment, and a practice session with an event: ids 1 and 2 where there are two."""
    mh.project(db)
    mh.insert(
        db, "user", id=1, organization_id=1, email="u@o", display_name="", role=1, created_at=mh.T0
    )
    mh.source(db, id=1)
    mh.comment(db, 1)
    for i in (1, 2):
        mh.dataset(db, f"d{i}", f"fedcba987654321{i}", id=i)
        mh.insert(db, "dataset_source", dataset_id=i, source_id=1, position=0)
    mh.insert(
        db,
        "practice_session",
        id=1,
        organization_id=1,
        user_id=1,
        kind=1,
        created_at=mh.T0,
        updated_at=mh.T0,
    )
    mh.insert(
        db,
        "practice_event",
        id=1,
        session_id=1,
        type=1,
        text="",
        rating=0,
        data="{}",
        created_at=mh.T0,
    )
    if isinstance(db, peewee.PostgresqlDatabase):
        # Rows written with their ids leave the sequences behind; the server's never do.
        for table, last in (("dataset", 2), ("practice_session", 1), ("source", 1)):
            db.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})")


def test_migration_keeps_rows_and_references_and_never_reuses_ids(
    scratch: peewee.Database,  # noqa: F811
) -> None:
    db = scratch
    runner = Runner(db, str(MIGRATIONS))
    runner.up(target="0030_move_clock")
    _world(db)
    assert runner.up(target="0031_ids_never_reused") == ["0031_ids_never_reused"]

    assert _rows(db, "SELECT id, name FROM dataset ORDER BY id") == [(1, "d1"), (2, "d2")]
    assert _rows(db, "SELECT dataset_id, source_id FROM dataset_source ORDER BY dataset_id") == [
        (1, 1),
        (2, 1),
    ]
    assert _rows(db, "SELECT id, session_id FROM practice_event") == [(1, 1)]
    # The highest dataset deleted: the next one takes a new id, and the cascade still
    # reaches the rows that refer to the rebuilt table.
    db.execute_sql("DELETE FROM dataset WHERE id = 2")
    assert _rows(db, "SELECT dataset_id FROM dataset_source") == [(1,)]
    mh.dataset(db, "d2", "00000000000000aa")
    assert _rows(db, "SELECT id FROM dataset WHERE name = 'd2'") == [(3,)]
    db.execute_sql("DELETE FROM practice_session WHERE id = 1")
    assert _rows(db, "SELECT COUNT(*) FROM practice_event") == [(0,)]
    mh.insert(
        db,
        "practice_session",
        organization_id=1,
        user_id=1,
        kind=1,
        created_at=mh.T0,
        updated_at=mh.T0,
    )
    assert _rows(db, "SELECT id FROM practice_session") == [(2,)]
    # A unique index is back: a second source of the same name in the project is refused.
    with pytest.raises(peewee.IntegrityError), db.atomic():
        mh.source(db, "0123456789abcdee")
    if isinstance(db, peewee.SqliteDatabase):
        assert _rows(db, "PRAGMA foreign_key_check") == []
        assert _rows(db, "PRAGMA integrity_check") == [("ok",)]


def _tables_reusing_ids(path: str) -> list[str]:
    lite = sqlite3.connect(path)
    try:
        rows = lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND sql LIKE '%\"id\" INTEGER NOT NULL PRIMARY KEY%' "
            "AND sql NOT LIKE '%AUTOINCREMENT%' AND name NOT IN ('move_clock', 'schema_migration')"
        ).fetchall()
    finally:
        lite.close()
    return [name for (name,) in rows]


@_ASYNC
async def test_every_sqlite_table_with_an_id_counts_it_up_for_good(org: Org) -> None:
    if database.is_postgres(org.running.db_url):
        pytest.skip("PostgreSQL's sequences never give a value twice")
    assert _tables_reusing_ids(database.sqlite_path(org.running.db_url)) == []


@_ASYNC
async def test_a_dataset_created_again_refuses_the_old_continuation(org: Org) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name, "s")
    await h.sync(org.admin, project.name, "s", [h.comment(f"c{i}", i) for i in range(20)])
    first = await h.dataset(org.admin, project.name, [src.id], name="again")
    request = datasets_pb2.ExportDatasetRequest(owner=project.name, name="again", limit=5)
    page = await org.admin.datasets.ExportDataset(request)
    await org.admin.datasets.DeleteDataset(
        datasets_pb2.DeleteDatasetRequest(owner=project.name, name="again")
    )
    second = await h.dataset(org.admin, project.name, [src.id], name="again")
    assert second.id != first.id
    request.continuation = page.continuation
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.ExportDataset(request)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "PAGE_TOKEN_INVALID"
    assert err.value.fields == ["continuation"]


@_ASYNC
async def test_a_project_created_again_refuses_the_old_list_token(org: Org) -> None:
    project = await org.project()
    for name in ("s1", "s2"):
        await h.source(org.admin, project.name, name)
    listed = await org.admin.sources.ListSources(
        sources_pb2.ListSourcesRequest(owner=project.name, page_size=1)
    )
    assert listed.next_page_token
    for name in ("s1", "s2"):
        await org.admin.sources.DeleteSource(
            sources_pb2.DeleteSourceRequest(owner=project.name, name=name)
        )
    await org.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=project.id))
    again = await org.project(project.name)
    assert again.id != project.id
    await h.source(org.admin, project.name, "s1")
    with pytest.raises(CorrigoError) as err:
        await org.admin.sources.ListSources(
            sources_pb2.ListSourcesRequest(
                owner=project.name, page_size=1, page_token=listed.next_page_token
            )
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "PAGE_TOKEN_INVALID"


@_ASYNC
async def test_a_practice_session_created_after_a_deleted_one_takes_a_new_id(org: Org) -> None:
    practice = org.admin.practice
    old = await practice.CreatePracticeSession(practice_pb2.CreatePracticeSessionRequest())
    await practice.AppendEvents(
        practice_pb2.AppendEventsRequest(
            session_id=old.session_id,
            events=[PracticeEvent(type=PracticeEvent.NOTE, text=f"n{i}") for i in range(3)],
        )
    )
    listed = await practice.ListEvents(
        practice_pb2.ListEventsRequest(session_id=old.session_id, page_size=1)
    )
    assert listed.next_page_token
    await practice.DeletePracticeSession(
        practice_pb2.DeletePracticeSessionRequest(session_id=old.session_id)
    )
    new = await practice.CreatePracticeSession(practice_pb2.CreatePracticeSessionRequest())
    assert new.session_id > old.session_id
    with pytest.raises(CorrigoError) as err:
        await practice.ListEvents(
            practice_pb2.ListEventsRequest(
                session_id=old.session_id, page_size=1, page_token=listed.next_page_token
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


@_ASYNC
async def test_a_correction_session_created_after_a_deleted_one_takes_a_new_id(org: Org) -> None:
    corpus = await ch.corpus(org, 6)
    old = await ch.prepared(corpus, await corpus.create(sample_size=4))
    listed = await corpus.annotator.corrections.ListSessionDocuments(
        correction_pb2.ListSessionDocumentsRequest(
            project_id=corpus.project_id, session_id=old.id, page_size=1
        )
    )
    assert listed.next_page_token
    await corpus.annotator.corrections.DeleteCorrectionSession(
        correction_pb2.DeleteCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=old.id
        )
    )
    await ch.gone(corpus, old.id)
    new = await corpus.create(sample_size=4)
    assert new.id > old.id
    with pytest.raises(CorrigoError) as err:
        await corpus.annotator.corrections.ListSessionDocuments(
            correction_pb2.ListSessionDocumentsRequest(
                project_id=corpus.project_id,
                session_id=old.id,
                page_size=1,
                page_token=listed.next_page_token,
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
