"""Change positions (`store.positions`, `store.changes`): every write that changes what an
export of a dataset shows leaves the comment at a new position, a row holds only its
latest change, and a reader below the horizon never misses a write that commits later."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import peewee
import psycopg2
import pytest
from playhouse.migrations import Runner

from corrigo.server.store import changes, database, positions
from corrigo.server.store.database import MIGRATIONS, Sql
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from tests import dataset_helpers as h
from tests import migration_helpers as mh
from tests.conftest import Org, Running
from tests.migration_helpers import scratch  # noqa: F401 (a fixture)

_ASYNC = pytest.mark.asyncio(loop_scope="session")

_START = (0, 0)


async def _ids(sql: str, *params: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in await database.fetch(Sql(sql), params)}


async def _world(org: Org) -> tuple[str, str, changes.Scope, dict[str, int]]:
    """A project (its name) with dataset `ds` over source `mailbox` (its hex id) holding
    comments c0..c4 and the label L; the scope of `ds`, and the comments' internal ids."""
    project = await org.project()
    src = await h.source(org.admin, project.name)
    ds = await h.dataset(org.admin, project.name, [src.id])
    await h.sync(org.admin, project.name, "mailbox", [h.comment(f"c{i}", i) for i in range(5)])
    await org.admin.datasets.CreateLabelDefs(h.label_defs(project.name, ["L"]))
    ((dataset_id, source_id),) = await database.fetch(
        Sql("SELECT d.id, s.id FROM dataset AS d, source AS s WHERE d.hex_id = ? AND s.hex_id = ?"),
        (ds.id, src.id),
    )
    comments = await _ids("SELECT comment_id, id FROM comment WHERE source_id = ?", source_id)
    return project.name, src.id, changes.Scope(int(dataset_id), [int(source_id)]), comments


async def _latest(scope: changes.Scope) -> int:
    """The latest position written in the scope's tables (every write here has committed)."""
    tables = [("comment", "source_id", s) for s in scope.source_ids]
    tables += [("labelling", "dataset_id", scope.dataset_id)]
    tables += [("labelling_removed", "dataset_id", scope.dataset_id)]
    tables += [("comment_removed", "source_id", s) for s in scope.source_ids]
    if scope.version_id is not None:
        tables += [("prediction", "version_id", scope.version_id)]
    found = 0
    for table, parent, value in tables:
        rows = await database.fetch(
            Sql(f"SELECT MAX(change_tx) FROM {table} WHERE {parent} = ?"), (value,)
        )
        found = max(found, int(rows[0][0] or 0))
    return found


async def _all(scope: changes.Scope, after: changes.Change = _START) -> list[changes.Change]:
    """Every change after `after`, once the horizon has passed the latest (on PostgreSQL a
    transaction of the server's background work may hold it back for a moment)."""
    latest = await _latest(scope)
    for _ in range(200):
        below = await positions.horizon()
        if below > latest:
            return await changes.changed(scope, after, below, 1000)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the horizon stayed at or below {latest}")


async def _label(org: Org, owner: str, uid: str, names: tuple[str, ...]) -> None:
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="ds",
            comment_uid=uid,
            assigned=[Label(name=n, sentiment="positive") for n in names],
        )
    )


@_ASYNC
async def test_each_write_moves_its_comments_to_one_later_position(org: Org) -> None:
    owner, source_hex, scope, ids = await _world(org)
    synced = await _all(scope)
    assert sorted(c for _, c in synced) == sorted(ids.values())
    # One sync: one position for all its comments.
    assert len({tx for tx, _ in synced}) == 1
    last = synced[-1]

    # An unchanged re-sync leaves the comments where they are.
    await h.sync(org.admin, owner, "mailbox", [h.comment("c1", 1)])
    assert await _all(scope, last) == []

    # A labelling set, a comment changed, a labelling removed: each a later position,
    # and each comment only at its latest change.
    await _label(org, owner, f"{source_hex}.c2", ("L",))
    await h.sync(org.admin, owner, "mailbox", [h.comment("c3", 3, text="changed")])
    await _label(org, owner, f"{source_hex}.c2", ())
    later = await _all(scope, last)
    assert sorted(c for _, c in later) == sorted([ids["c3"], ids["c2"]])
    assert last[0] < later[0][0]
    # A row holds only its latest change: c3 is no longer at the first sync's position,
    # and c2's labelling, set then removed, is one change.
    everything = await _all(scope)
    assert sorted(c for _, c in everything) == sorted([*ids.values(), ids["c2"]])
    assert everything[-2:] == later


@_ASYNC
async def test_a_deleted_comment_leaves_its_uid_at_the_deletes_position(org: Org) -> None:
    owner, _, scope, ids = await _world(org)
    last = (await _all(scope))[-1]
    deleted = await org.admin.sources.DeleteComments(
        sources_pb2.DeleteCommentsRequest(owner=owner, name="mailbox", ids=["c0", "c4", "absent"])
    )
    assert deleted.deleted == 2
    gone = await _all(scope, last)
    assert [c for _, c in gone] == sorted([ids["c0"], ids["c4"]])
    assert gone[0][0] == gone[1][0]
    names = await _ids(
        "SELECT name, comment_id FROM comment_removed WHERE source_id = ?", scope.source_ids[0]
    )
    assert names == {"c0": ids["c0"], "c4": ids["c4"]}


@_ASYNC
async def test_predictions_change_only_the_scope_of_their_version(org: Org) -> None:
    owner, source_hex, scope, ids = await _world(org)
    last = (await _all(scope))[-1]
    version = await h.predicted(
        org.admin,
        owner,
        "ds",
        [
            models_pb2.CommentPredictions(
                uid=f"{source_hex}.c1", labels=[PredictedLabel(name="L", probability=0.5)]
            )
        ],
    )
    (version_id,) = (
        await _ids(
            "SELECT version, id FROM model_version WHERE dataset_id = ? AND version = ?",
            scope.dataset_id,
            version.version,
        )
    ).values()
    pinned = changes.Scope(scope.dataset_id, scope.source_ids, version_id)
    assert await _all(scope, last) == []
    assert [c for _, c in await _all(pinned, last)] == [ids["c1"]]


@_ASYNC
async def test_pages_of_changes_resume_exactly(org: Org) -> None:
    owner, source_hex, scope, ids = await _world(org)
    for i in (4, 0, 2):
        # Each write at a position of its own (on SQLite writes between two horizons share one).
        await positions.horizon()
        await _label(org, owner, f"{source_hex}.c{i}", ("L",))
    whole = await _all(scope)
    below = await positions.horizon()
    paged: list[changes.Change] = []
    after = _START
    while page := await changes.changed(scope, after, below, 2):
        paged += page
        after = page[-1]
    assert paged == whole
    # Five comments synced, then three labelled: a change per row.
    assert sorted(c for _, c in whole) == sorted([*ids.values(), ids["c4"], ids["c0"], ids["c2"]])


@_ASYNC
async def test_other_datasets_and_sources_are_not_in_scope(org: Org) -> None:
    owner, _, scope, _ = await _world(org)
    other = await h.source(org.admin, owner, "other")
    await h.dataset(org.admin, owner, [other.id], name="ds2")
    last = (await _all(scope))[-1]
    await h.sync(org.admin, owner, "other", [h.comment("x", 1)])
    assert await _all(scope, last) == []


@_ASYNC
async def test_a_page_of_changes_reads_by_index_wherever_it_starts(
    org: Org, server: Running
) -> None:
    _, _, scope, ids = await _world(org)
    pinned = changes.Scope(scope.dataset_id, scope.source_ids, 1)
    read, params = changes.statement(pinned, (5, ids["c2"]), 10, 64)
    if database.is_postgres(server.db_url):
        rows = await database.fetch(Sql("EXPLAIN " + read.text), params)
        plan = "\n".join(str(row[0]) for row in rows)
        assert "Seq Scan" not in plan, plan
        return
    # SQLite: every branch is an index seek on all the keyset's columns, so a page late in
    # a position holding a million rows reads no more than a page.
    rows = await database.fetch(Sql("EXPLAIN QUERY PLAN " + read.text), params)
    searches = [str(row[3]) for row in rows if "SEARCH" in str(row[3])]
    # Five tables (comments, deleted comments, labellings, removed labellings, predictions):
    # the rest of the position by (position, key), the later ones by position.
    assert all("INDEX" in search for search in searches), searches
    same = [s for s in searches if "change_tx=? AND" in s and "id>?)" in s]
    later = [s for s in searches if "change_tx>? AND change_tx<?)" in s]
    assert (len(same), len(later), len(searches)) == (5, 5, 10), searches


def _open_write(running: Running, source_hex: str) -> Any:
    """Another connection in the middle of a write to the source's comments: it has its
    position and has not committed."""
    if database.is_postgres(running.db_url):
        conn = psycopg2.connect(running.db_url)
        conn.cursor().execute(
            "UPDATE comment SET change_tx = DEFAULT "
            "WHERE comment_id = 'c0' AND source_id = (SELECT id FROM source WHERE hex_id = %s)",
            (source_hex,),
        )
        return conn
    conn = sqlite3.connect(
        database.sqlite_path(running.db_url), isolation_level=None, check_same_thread=False
    )
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE comment SET change_tx = (SELECT value FROM change_clock) "
        "WHERE comment_id = 'c0' AND source_id = (SELECT id FROM source WHERE hex_id = ?)",
        (source_hex,),
    )
    return conn


@_ASYNC
async def test_no_reader_passes_a_write_that_can_still_commit(org: Org, server: Running) -> None:
    owner, source_hex, scope, ids = await _world(org)
    last = (await _all(scope))[-1]
    pending = _open_write(server, source_hex)
    try:
        if database.is_postgres(server.db_url):
            # A write that began later commits first: no reader sees it before the open one.
            await _label(org, owner, f"{source_hex}.c1", ("L",))
            assert await changes.changed(scope, last, await positions.horizon(), 10) == []
        else:
            # The horizon waits for the write lock: the open write commits before it.
            waiting = asyncio.ensure_future(positions.horizon())
            await asyncio.sleep(0.2)
            assert not waiting.done()
    finally:
        pending.commit()
        pending.close()
    if database.is_postgres(server.db_url):
        seen = await _all(scope, last)
        assert [c for _, c in seen] == [ids["c0"], ids["c1"]]
        assert seen[0][0] < seen[1][0]
    else:
        below = await waiting
        assert await changes.changed(scope, last, below, 10) == [(below - 1, ids["c0"])]


def test_rows_written_before_the_migration_are_at_position_zero(
    scratch: peewee.Database,  # noqa: F811
) -> None:
    db = scratch
    runner = Runner(db, str(MIGRATIONS))
    runner.up(target="0041_retired_labels")
    mh.project(db)
    mh.source(db, id=1)
    mh.comment(db, 1)
    assert runner.up(target="0050_change_positions") == ["0050_change_positions"]
    assert db.execute_sql("SELECT change_tx FROM comment WHERE id = 1").fetchall() == [(0,)]
    # A row written afterwards without a position: SQLite's writes always give one, and on
    # PostgreSQL the column's default is the writing transaction's id.
    mh.comment(db, 2)
    ((written,),) = db.execute_sql("SELECT change_tx FROM comment WHERE id = 2").fetchall()
    assert written == 0 if isinstance(db, peewee.SqliteDatabase) else written > 0
