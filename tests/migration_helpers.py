"""What the migration tests share: a scratch database of the backend under test, and
rows written by SQL, as a schema of any age takes them (the models describe only the
newest)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import peewee
import pytest

_SCHEMA = "migration_test"
T0 = datetime.datetime(2024, 1, 1)


@pytest.fixture
def scratch(db_url: str, tmp_path: Path) -> Iterator[peewee.Database]:
    """An empty database of the backend under test, outside the one the server uses."""
    if not db_url.startswith("postgres"):
        db = peewee.SqliteDatabase(str(tmp_path / "migrate.sqlite3"), pragmas={"foreign_keys": 1})
        yield db
        db.close()
        return
    url = urlparse(db_url)
    db = peewee.PostgresqlDatabase(
        url.path.lstrip("/"),
        user=url.username,
        password=url.password,
        host=url.hostname,
        port=url.port or 5432,
        options=f"-c search_path={_SCHEMA}",
    )
    db.execute_sql(f"DROP SCHEMA IF EXISTS {_SCHEMA} CASCADE; CREATE SCHEMA {_SCHEMA}")
    yield db
    db.execute_sql(f"DROP SCHEMA {_SCHEMA} CASCADE")
    db.close()


def insert(db: peewee.Database, table: str, **values: object) -> None:
    # Quoted: "user" is a reserved word on PostgreSQL.
    columns = ", ".join(f'"{c}"' for c in values)
    marks = ", ".join([db.param] * len(values))
    db.execute_sql(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', tuple(values.values()))


def project(db: peewee.Database) -> None:
    """Organization 1 and its project 1."""
    insert(db, "organization", id=1, name="o", created_at=T0)
    insert(db, "project", id=1, organization_id=1, name="p", title="", created_at=T0)


def _named(db: peewee.Database, table: str, name: str, hex_id: str, **values: object) -> None:
    """A row of a resource named in project 1: a source or a dataset."""
    insert(db, table, project_id=1, hex_id=hex_id, name=name, title="", description="", **values)


def source(db: peewee.Database, hex_id: str = "0123456789abcdef", **values: object) -> None:
    """A source `s` of project 1."""
    _named(db, "source", "s", hex_id, created_at=T0, updated_at=T0, **values)


def comment(db: peewee.Database, id: int, **values: object) -> None:
    """Comment `c<id>` of source 1."""
    insert(
        db,
        "comment",
        id=id,
        source_id=1,
        comment_id=f"c{id}",
        ts_us=0,
        created_us=0,
        content_hash="h",
        body=b"",
        **values,
    )


def dataset(db: peewee.Database, name: str, hex_id: str, **values: object) -> None:
    """A dataset of project 1 (the sources it shows are rows of their own)."""
    _named(
        db,
        "dataset",
        name,
        hex_id,
        model_family="english",
        has_sentiment=False,
        created=T0,
        last_modified=T0,
        **values,
    )
