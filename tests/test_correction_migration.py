"""Migration 0020 on a database that already holds predictions and model versions: it
backfills each prediction's top probability and what each version was trained on. On
SQLite (a scratch file) and PostgreSQL (a scratch schema of the test database)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import peewee
import pytest
from playhouse.migrations import Runner

from corrigo.server.store.database import MIGRATIONS
from corrigo.v1.comments_pb2 import AssignedLabels, Label, PredictedLabel, Predictions

_SCHEMA = "migration_0020_test"
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


def _insert(db: peewee.Database, table: str, **values: object) -> None:
    columns = ", ".join(values)
    marks = ", ".join([db.param] * len(values))
    db.execute_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))


def test_backfills_top_probabilities_and_labelled_documents(scratch: peewee.Database) -> None:
    db = scratch
    runner = Runner(db, str(MIGRATIONS))
    runner.up(target="0011_improvement")
    _insert(db, "organization", id=1, name="o", created_at=T0)
    _insert(db, "project", id=1, organization_id=1, name="p", title="", created_at=T0)
    _insert(
        db,
        "source",
        id=1,
        project_id=1,
        hex_id="0123456789abcdef",
        name="s",
        title="",
        description="",
        created_at=T0,
        updated_at=T0,
    )
    for i in (1, 2, 3):
        _insert(
            db,
            "comment",
            id=i,
            source_id=1,
            comment_id=f"c{i}",
            ts_us=0,
            created_us=0,
            content_hash="h",
            body=b"",
        )
    _insert(
        db,
        "dataset",
        id=1,
        project_id=1,
        hex_id="fedcba9876543210",
        name="d",
        title="",
        description="",
        model_family="english",
        has_sentiment=False,
        created=T0,
        last_modified=T0,
    )
    labels = AssignedLabels(assigned=[Label(name="A")]).SerializeToString()
    hour = datetime.timedelta(hours=1)
    # Two labellings before version 1, one of them only dismissed labels; one after.
    _insert(
        db, "labelling", dataset_id=1, comment_id=1, assigned=labels, dismissed=b"", updated_at=T0
    )
    _insert(
        db, "labelling", dataset_id=1, comment_id=2, assigned=b"", dismissed=labels, updated_at=T0
    )
    _insert(
        db,
        "labelling",
        dataset_id=1,
        comment_id=3,
        assigned=labels,
        dismissed=b"",
        updated_at=T0 + 3 * hour,
    )
    _insert(
        db,
        "model",
        id=1,
        dataset_id=1,
        display_name="m",
        type=3,
        classes="[]",
        labels="[]",
        created_at=T0,
    )
    _insert(
        db,
        "model_version",
        id=1,
        dataset_id=1,
        model_id=1,
        version=1,
        validation_score=0.5,
        created_at=T0 + hour,
    )
    _insert(
        db,
        "model_version",
        id=2,
        dataset_id=1,
        model_id=1,
        version=2,
        validation_score=0.6,
        created_at=T0 + 4 * hour,
    )
    predicted = Predictions(
        labels=[
            PredictedLabel(name="A", probability=0.3),
            PredictedLabel(name="B", probability=0.8),
        ]
    )
    _insert(db, "prediction", version_id=1, comment_id=1, labels=predicted.SerializeToString())
    _insert(db, "prediction", version_id=1, comment_id=2, labels=b"")

    assert runner.up(target="0020_correction") == ["0020_correction"]
    tops = db.execute_sql(
        "SELECT comment_id, top_probability FROM prediction ORDER BY comment_id"
    ).fetchall()
    assert [tuple(row) for row in tops] == [(1, pytest.approx(0.8)), (2, None)]
    trained = db.execute_sql(
        "SELECT version, labelled_documents FROM model_version ORDER BY version"
    ).fetchall()
    assert [tuple(row) for row in trained] == [(1, 1), (2, 2)]
    for table in ("correction_session", "correction_claim", "document_group"):
        assert db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
