"""Deferred deletes: a deleted source or dataset leaves its project at once and its rows
are removed afterwards in bounded steps (`store.purge`).

A doomed row keeps its id (its comments, labellings and predictions still refer to it)
but loses its project: `project_id` becomes nullable on `source`, `dataset` and
`correction_session` (a dataset's sessions leave the project with it). Every read
reaches these rows through their project, so a doomed row is gone for readers, and a
unique `(project_id, name)` treats NULLs as distinct, so the name is free at once. The
`purge` table lists the doomed rows with the lease of the server removing them.

PostgreSQL drops the NOT NULL in place; SQLite rebuilds the three (small) tables, keeping
their AUTOINCREMENT counters."""

import re
from typing import Any

import peewee
from peewee import BigIntegerField, CharField, CompositeKey, DateTimeField, Model

_TABLES = ("source", "dataset", "correction_session")
_NOT_NULL = '"project_id" INTEGER NOT NULL'


def up(migrator: Any, db: Any) -> None:
    class Purge(Model):
        # "source" or "dataset"
        kind = CharField(max_length=16)
        row_id = BigIntegerField()
        doomed_at = DateTimeField()
        lease_owner = CharField(max_length=32, null=True)
        lease_until = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "purge"
            primary_key = CompositeKey("kind", "row_id")

    db.create_tables([Purge])
    if not isinstance(db, peewee.SqliteDatabase):
        for table in _TABLES:
            db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "project_id" DROP NOT NULL')
        return
    # Dropping a parent table with foreign keys on would delete its children by cascade.
    if db.execute_sql("PRAGMA foreign_keys").fetchone()[0]:
        raise RuntimeError("rebuilding tables needs foreign keys off (the runner's context)")
    for table in _TABLES:
        _rebuild_nullable(db, table)
    broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"rebuilding the tables broke foreign keys: {broken[:5]}")


def _rebuild_nullable(db: Any, table: str) -> None:
    """`table` rebuilt with `project_id` nullable, its indexes and id counter kept."""
    (create,) = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if _NOT_NULL not in create:
        raise RuntimeError(f"{table}.project_id is not as migration 0031 left it: {create}")
    indexes = [
        row[0]
        for row in db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        ).fetchall()
    ]
    counter = db.execute_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    rebuilt = f"{table}__nullable"
    head = re.compile(rf'^CREATE TABLE "?{re.escape(table)}"?', re.IGNORECASE)
    create = head.sub(f'CREATE TABLE "{rebuilt}"', create, count=1)
    db.execute_sql(create.replace(_NOT_NULL, '"project_id" INTEGER', 1))
    db.execute_sql(f'INSERT INTO "{rebuilt}" SELECT * FROM "{table}"')
    db.execute_sql(f'DROP TABLE "{table}"')
    # Other tables' foreign keys name `table`: they now refer to the rebuilt table.
    db.execute_sql(f'ALTER TABLE "{rebuilt}" RENAME TO "{table}"')
    for index in indexes:
        db.execute_sql(index)
    # Ids are never reused (0031): the counter passes the ids of rows deleted before.
    db.execute_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
    db.execute_sql(
        "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
        (table, counter[0] if counter else 0),
    )
