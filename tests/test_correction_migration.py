"""Migration 0020 on a database that already holds predictions and model versions: it
backfills each prediction's top probability and what each version was trained on. On
SQLite (a scratch file) and PostgreSQL (a scratch schema of the test database)."""

from __future__ import annotations

import datetime

import peewee
import pytest
from playhouse.migrations import Runner

from corrigo.server.store.database import MIGRATIONS
from corrigo.v1.comments_pb2 import AssignedLabels, Label, PredictedLabel, Predictions
from tests import migration_helpers as mh
from tests.migration_helpers import scratch  # noqa: F401 (a fixture)


def test_backfills_top_probabilities_and_labelled_documents(
    scratch: peewee.Database,  # noqa: F811
) -> None:
    db = scratch
    runner = Runner(db, str(MIGRATIONS))
    runner.up(target="0011_improvement")
    mh.project(db)
    mh.source(db, id=1)
    for i in (1, 2, 3):
        mh.comment(db, i)
    mh.dataset(db, "d", "fedcba9876543210", id=1)
    labels = AssignedLabels(assigned=[Label(name="A")]).SerializeToString()
    hour = datetime.timedelta(hours=1)
    # Two labellings before version 1, one of them only dismissed labels; one after.
    mh.insert(
        db,
        "labelling",
        dataset_id=1,
        comment_id=1,
        assigned=labels,
        dismissed=b"",
        updated_at=mh.T0,
    )
    mh.insert(
        db,
        "labelling",
        dataset_id=1,
        comment_id=2,
        assigned=b"",
        dismissed=labels,
        updated_at=mh.T0,
    )
    mh.insert(
        db,
        "labelling",
        dataset_id=1,
        comment_id=3,
        assigned=labels,
        dismissed=b"",
        updated_at=mh.T0 + 3 * hour,
    )
    mh.insert(
        db,
        "model",
        id=1,
        dataset_id=1,
        display_name="m",
        type=3,
        classes="[]",
        labels="[]",
        created_at=mh.T0,
    )
    mh.insert(
        db,
        "model_version",
        id=1,
        dataset_id=1,
        model_id=1,
        version=1,
        validation_score=0.5,
        created_at=mh.T0 + hour,
    )
    mh.insert(
        db,
        "model_version",
        id=2,
        dataset_id=1,
        model_id=1,
        version=2,
        validation_score=0.6,
        created_at=mh.T0 + 4 * hour,
    )
    predicted = Predictions(
        labels=[
            PredictedLabel(name="A", probability=0.3),
            PredictedLabel(name="B", probability=0.8),
        ]
    )
    mh.insert(db, "prediction", version_id=1, comment_id=1, labels=predicted.SerializeToString())
    mh.insert(db, "prediction", version_id=1, comment_id=2, labels=b"")

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
