"""Ids are never reused. SQLite gives a new row the highest id plus one, so deleting the
row with the highest id hands that id to the next one (a dataset created again under its
name took the old one's id and accepted its continuations): every table with an integer
`id` key is rebuilt with AUTOINCREMENT, whose counter (`sqlite_sequence`) only grows.
PostgreSQL's sequences never give a value twice: nothing to do there.

A table added by a later migration declares its key `INTEGER PRIMARY KEY AUTOINCREMENT` on
SQLite itself (tests/test_ids_never_reused.py checks every table)."""

import re
from typing import Any

import peewee

# The move clock's one row has a fixed id; the migration history is the runner's.
_KEPT = ("move_clock", "schema_migration")
_KEY = '"id" INTEGER NOT NULL PRIMARY KEY'


def up(migrator: Any, db: Any) -> None:
    if not isinstance(db, peewee.SqliteDatabase):
        return
    # The runner turned foreign keys off before its transaction: dropping a parent table
    # with them on would delete (by cascade) the rows that refer to it.
    if db.execute_sql("PRAGMA foreign_keys").fetchone()[0]:
        raise RuntimeError("rebuilding tables needs foreign keys off (the runner's context)")
    tables = db.execute_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE ? "
        "AND sql NOT LIKE '%AUTOINCREMENT%' ORDER BY name",
        (f"%{_KEY}%",),
    ).fetchall()
    for name, create in tables:
        if name in _KEPT:
            continue
        indexes = [
            row[0]
            for row in db.execute_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (name,),
            ).fetchall()
        ]
        rebuilt = f"{name}__autoincrement"
        head = re.compile(rf'^CREATE TABLE "?{re.escape(name)}"?', re.IGNORECASE)
        create = head.sub(f'CREATE TABLE "{rebuilt}"', create, count=1)
        db.execute_sql(create.replace(_KEY, f"{_KEY} AUTOINCREMENT", 1))
        db.execute_sql(f'INSERT INTO "{rebuilt}" SELECT * FROM "{name}"')
        db.execute_sql(f'DROP TABLE "{name}"')
        # Other tables' foreign keys name `name`: they now refer to the rebuilt table.
        db.execute_sql(f'ALTER TABLE "{rebuilt}" RENAME TO "{name}"')
        for index in indexes:
            db.execute_sql(index)
        db.execute_sql("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
        db.execute_sql(
            f'INSERT INTO sqlite_sequence (name, seq) SELECT ?, COALESCE(MAX(id), 0) FROM "{name}"',
            (name,),
        )
    broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"rebuilding the tables broke foreign keys: {broken[:5]}")
