"""Statements bounded by their call, errors classified by what happened, and Peewee's
thread-local transactions out of reach: on the test server's database, both backends."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
import weakref
from collections.abc import Iterator

import grpc
import pytest

from corrigo.client import CorrigoError
from corrigo.server.api.errors import Unavailable
from corrigo.server.store import connections, database, postgres
from corrigo.server.store.identity import Organization
from corrigo.v1 import sources_pb2
from tests import dataset_helpers as h
from tests.conftest import Org, Running
from tests.test_store_faults import _filled, _lock_source_row

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _rendered(sql: str) -> str:
    return database.Sql(sql).render(database.database.obj)


@pytest.fixture
def short_statements() -> Iterator[float]:
    """The server's statement limit at half a second for the test."""
    seconds = 0.5
    connections.configure(statement_seconds=seconds)
    try:
        yield seconds
    finally:
        connections.configure(statement_seconds=connections.STATEMENT_SECONDS)


async def test_a_statement_past_the_servers_limit_answers_deadline_exceeded(
    org: Org, server: Running, short_statements: float
) -> None:
    owner = await _filled(org, 1)
    sources = await org.admin.sources.ListSources(sources_pb2.ListSourcesRequest(owner=owner))
    lock = await asyncio.to_thread(_lock_source_row, server, sources.sources[0].id)
    try:
        began = time.monotonic()
        with pytest.raises(CorrigoError) as raised:
            # No deadline of its own: the server's limit stops it.
            await org.admin.sources.SyncComments(
                sources_pb2.SyncCommentsRequest(
                    owner=owner, name="src", comments=[h.comment("waits", 1)]
                )
            )
        elapsed = time.monotonic() - began
    finally:
        await asyncio.to_thread(lock.rollback)
        await asyncio.to_thread(lock.close)
    error = raised.value
    assert (error.code, error.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "STATEMENT_TIMEOUT")
    assert "--statement-timeout" in error.message
    # Not retried by the client: one limit's worth, not five.
    assert short_statements <= elapsed < 3 * short_statements + 0.5
    answer = await org.admin.sources.SyncComments(
        sources_pb2.SyncCommentsRequest(owner=owner, name="src", comments=[h.comment("ok", 1)]),
        timeout=5,
    )
    assert answer.new == 1


async def test_a_misused_statement_is_a_bug_not_a_lost_connection(server: Running) -> None:
    # Two placeholders, one value: the driver refuses it on a healthy connection.
    with pytest.raises(Exception) as raised:
        await database.execute(_rendered("SELECT ?, ?"), (1,), writes=False)
    assert not isinstance(raised.value, Unavailable), repr(raised.value)
    org = await Organization.acreate(name=f"after-misuse-{uuid.uuid4().hex[:8]}")
    rows = await database.fetch(
        database.Sql("SELECT name FROM organization WHERE id = ?"), (org.id,)
    )
    assert [tuple(row) for row in rows] == [(org.name,)]


async def test_peewee_transactions_refuse_outside_migrations(server: Running) -> None:
    def peewee_atomic() -> None:
        with database.database.atomic():
            Organization.create(name=f"atomic-{uuid.uuid4().hex[:8]}")

    for work in (
        peewee_atomic,
        lambda: Organization.get_or_create(name=f"goc-{uuid.uuid4().hex[:8]}"),
        lambda: database.database.manual_commit().__enter__(),
    ):
        with pytest.raises(RuntimeError, match=r"database\.atomic\(\)"):
            await database.run(work)
    # The store's own transactions work.
    name = f"tx-{uuid.uuid4().hex[:8]}"
    async with database.atomic():
        await Organization.acreate(name=name)
    assert await Organization.aget_or_none(Organization.name == name) is not None


async def test_a_read_connection_cannot_write(server: Running) -> None:
    name = f"ro-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception) as raised:
        await database.execute(
            _rendered("INSERT INTO organization (name, created_at) VALUES (?, ?)"),
            (name, database.utcnow()),
            writes=False,
        )
    assert not isinstance(raised.value, Unavailable), repr(raised.value)
    assert await Organization.aget_or_none(Organization.name == name) is None


async def test_a_repeated_statement_is_parsed_once_on_postgresql(server: Running) -> None:
    if database.is_sqlite():
        pytest.skip("PostgreSQL's prepared statements")
    statement = database.Sql(f"SELECT ? + 1 AS corrigo_{uuid.uuid4().hex}")
    async with connections.unit(database.database.obj.reads):
        answers = [(await database.fetch(statement, (n,)))[0][0] for n in range(3)]
        kept = await database.fetch(
            database.Sql("SELECT name FROM pg_prepared_statements WHERE statement = ?"),
            (postgres.numbered(statement.render(database.database.obj)),),
        )
    assert answers == [1, 2, 3]
    # One named statement on the server, executed three times: an unnamed one would be
    # parsed and planned again at each execution, and is not listed.
    assert len(kept) == 1 and kept[0][0].startswith("corrigo_"), kept


async def test_a_statements_bound_keeps_nothing_of_its_call(server: Running) -> None:
    class Answer:
        """Stands for what a call answers (such as an export page)."""

    async def call() -> Answer:
        # On a pool connection: its bound is a timer the loop keeps until it would fire.
        await database.fetch(database.Sql("SELECT 1"), ())
        return Answer()

    task = asyncio.ensure_future(call())
    await asyncio.wait([task])
    answered = weakref.ref(task.result())
    del task
    gc.collect()
    # The timer's context names the unit, which must not keep the call's task (and with
    # it the answer) alive for the statement limit.
    assert answered() is None
