"""Small reads (`database.fetch`, every call's access check): outside a transaction they
borrow a connection only for themselves (PostgreSQL: one kept aside for them; SQLite: the
event loop's own), inside one they read through the transaction's connection. Run on the
test server's database, on both backends."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from corrigo.server.store import database
from corrigo.server.store.database import Sql, atomic, fetch
from corrigo.server.store.identity import Organization
from tests.conftest import Running

pytestmark = pytest.mark.asyncio(loop_scope="session")

_NAME = Sql("SELECT name FROM organization WHERE id = ?", bounded=True)


class _Rollback(Exception):
    pass


async def test_a_read_in_a_transaction_sees_its_own_writes(server: Running) -> None:
    name = f"tx-{uuid.uuid4().hex[:10]}"
    with pytest.raises(_Rollback):
        async with atomic():
            org = await Organization.acreate(name=name)
            assert await fetch(_NAME, (org.id,)) == [(name,)]
            raise _Rollback
    assert await fetch(_NAME, (org.id,)) == []


async def test_a_read_sees_what_another_task_committed(server: Running) -> None:
    async def create(name: str) -> int:
        async with atomic():
            org = await Organization.acreate(name=name)
        return int(org.id)

    for _ in range(3):
        name = f"seen-{uuid.uuid4().hex[:10]}"
        org_id = await asyncio.create_task(create(name))
        assert await fetch(_NAME, (org_id,)) == [(name,)]


async def test_many_reads_at_once_each_get_their_own_rows(server: Running) -> None:
    names = [f"many-{uuid.uuid4().hex[:10]}" for _ in range(8)]
    ids = []
    for name in names:
        org = await Organization.acreate(name=name)
        ids.append(org.id)

    async def read(i: int) -> list[tuple[str]]:
        rows = await fetch(_NAME, (ids[i % len(ids)],))
        return [tuple(row) for row in rows]

    answers = await asyncio.gather(*(read(i) for i in range(200)))
    assert answers == [[(names[i % len(names)],)] for i in range(200)]


async def test_a_read_cancelled_midway_leaves_the_next_reads_working(server: Running) -> None:
    slow = Sql(
        "SELECT pg_sleep(0.5)"
        if database.is_postgres(server.db_url)
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
        "SELECT count(*) FROM n"
    )
    readers = [asyncio.create_task(fetch(slow, ())) for _ in range(4)]
    await asyncio.sleep(0.05)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    org = await Organization.acreate(name=f"after-{uuid.uuid4().hex[:10]}")
    for _ in range(10):
        assert await fetch(_NAME, (org.id,)) == [(org.name,)]


async def test_failed_reads_leave_the_next_reads_working(server: Running) -> None:
    broken = Sql("SELECT id FROM no_such_table WHERE id = ?")
    failures = await asyncio.gather(
        *(fetch(broken, (1,)) for _ in range(20)), return_exceptions=True
    )
    assert all("no_such_table" in str(failure) for failure in failures)
    org = await Organization.acreate(name=f"failed-{uuid.uuid4().hex[:10]}")
    answers = await asyncio.gather(*(fetch(_NAME, (org.id,)) for _ in range(20)))
    assert [[tuple(row) for row in rows] for rows in answers] == [[(org.name,)]] * 20
