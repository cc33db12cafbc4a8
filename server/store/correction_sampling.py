"""Choosing a correction session's documents, and attaching the model's predictions.

The candidates are the comments of the model's dataset's sources (only the given ones,
or a group's, for a scoped session) that have no assigned labels in the dataset and
that no open session of the project holds. Sampling inserts the chosen documents'
claims, whose primary key is (project, comment), in the same transaction as the
session's documents and its move to PREDICTING. On PostgreSQL the samplers of one
project also take a transaction-scoped advisory lock, so a second sampler waits for the
first to commit and then sees its claims, instead of picking the same documents and
failing on the key; on SQLite the write transaction already runs them one at a time.
The primary key stays the guarantee either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import peewee

from corrigo.server.store import correction
from corrigo.server.store.correction import (
    CorrectionCandidate,
    CorrectionClaim,
    CorrectionDocument,
    Status,
)
from corrigo.server.store.database import atomic, database, execute, is_sqlite
from corrigo.server.store.datasets import DatasetSource, Labelling
from corrigo.server.store.ml_models import ModelVersion, Prediction
from corrigo.server.store.sources import Comment
from corrigo.v1.correction_pb2 import CreateCorrectionSessionRequest

# Arbitrary constant: the first key of the per-project advisory lock of samplers.
_SAMPLING_LOCK = 0x636F7273

# Which comments a sampling may choose among: None for every comment of the dataset,
# else comment ids (a list, or a query selecting them).
Scope = Sequence[int] | peewee.SelectQuery | None


def _pool(dataset_id: int, scope: Scope) -> peewee.Select:
    sources = DatasetSource.select(DatasetSource.source).where(DatasetSource.dataset == dataset_id)
    query = Comment.select(Comment.id).where(Comment.source.in_(sources))
    if scope is not None:
        query = query.where(Comment.id.in_(scope))
    return query


def _annotated(dataset_id: int) -> peewee.Function:
    return peewee.fn.EXISTS(
        Labelling.select(peewee.SQL("1")).where(
            Labelling.dataset == dataset_id,
            Labelling.comment == Comment.id,
            peewee.fn.LENGTH(Labelling.assigned) > 0,
        )
    )


def _claimed(project_id: int) -> peewee.Function:
    return peewee.fn.EXISTS(
        CorrectionClaim.select(peewee.SQL("1")).where(
            CorrectionClaim.project == project_id, CorrectionClaim.comment == Comment.id
        )
    )


def _free(project_id: int, dataset_id: int, scope: Scope) -> peewee.Select:
    """The candidates: in the pool, not annotated, not held by an open session."""
    return _pool(dataset_id, scope).where(~_annotated(dataset_id), ~_claimed(project_id))


@dataclass(frozen=True)
class Availability:
    # Whether the dataset holds any of the documents to sample from.
    pooled: bool
    # Whether any of them has no assigned labels.
    unannotated: bool
    # How many of those no open session holds, counted up to the sample size.
    free: int


async def availability(project_id: int, dataset_id: int, scope: Scope, limit: int) -> Availability:
    """Read in one statement, so in one snapshot: documents deleted by a concurrent call
    read as none, never as annotated or held by another session."""
    pool = _pool(dataset_id, scope)
    unannotated = pool.where(~_annotated(dataset_id))
    free = _free(project_id, dataset_id, scope).limit(limit).alias("free")
    query = peewee.Select(
        columns=[
            peewee.fn.EXISTS(pool.limit(1)),
            peewee.fn.EXISTS(unannotated.limit(1)),
            peewee.Select([free], [peewee.fn.COUNT(peewee.SQL("*"))]),
        ]
    ).bind(database)
    pooled, open_, count = (await database.list(query.tuples()))[0]
    return Availability(bool(pooled), bool(open_), int(count))


async def _latest_version(model_id: int) -> int | None:
    """The internal id of the model's latest version."""
    return await database.scalar(
        ModelVersion.select(ModelVersion.id)
        .where(ModelVersion.model == model_id)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )


NONE_FREE = (
    "no unannotated document is free to sample: other open sessions of the project hold "
    "them, or they were annotated since the session was created"
)


async def sample(session_id: int) -> None:
    """Choose, claim and store a SAMPLING session's documents and move it to PREDICTING
    (FAILED when none is free), in one transaction; nothing when the session is not
    SAMPLING (another server did it, or it is being deleted)."""
    async with atomic():
        row = await correction.locked(session_id)
        if row is None or row.status != Status.SAMPLING:
            return
        if not is_sqlite():
            await execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                (_SAMPLING_LOCK, row.project_id),
                writes=True,
            )
        version_id = await _latest_version(row.model_id)
        scope = None
        if row.scoped:
            scope = CorrectionCandidate.select(CorrectionCandidate.comment).where(
                CorrectionCandidate.session == session_id
            )
        query = _free(row.project_id, row.dataset_id, scope)
        if row.strategy == CreateCorrectionSessionRequest.UNCERTAINTY and version_id is not None:
            predicted = (Prediction.version == version_id) & (Prediction.comment == Comment.id)
            query = query.join(Prediction, peewee.JOIN.LEFT_OUTER, on=predicted).order_by(
                Prediction.top_probability.is_null(),
                Prediction.top_probability,
                peewee.fn.random(),
            )
        else:
            query = query.order_by(peewee.fn.random())
        chosen = [c for (c,) in await database.list(query.limit(row.sample_size).tuples())]
        await database.aexecute(
            CorrectionCandidate.delete().where(CorrectionCandidate.session == session_id)
        )
        if not chosen:
            await correction.record(
                row, status=Status.FAILED, failure_reason=NONE_FREE, document_count=0
            )
            return
        await database.aexecute(
            CorrectionClaim.insert_many(
                [{"project": row.project_id, "comment": c, "session": session_id} for c in chosen]
            )
        )
        await database.aexecute(
            CorrectionDocument.insert_many(
                [
                    {"session": session_id, "comment": c, "position": i}
                    for i, c in enumerate(chosen, start=1)
                ]
            )
        )
        await correction.record(
            row, status=Status.PREDICTING, document_count=len(chosen), model_version=version_id
        )


async def version_history(model_id: int, up_to_version_id: int) -> list[tuple[int, float]]:
    """(labelled documents, validation score) of the model's versions up to the given
    one, oldest first."""
    up_to = ModelVersion.select(ModelVersion.version).where(ModelVersion.id == up_to_version_id)
    rows = await database.list(
        ModelVersion.select(ModelVersion.labelled_documents, ModelVersion.validation_score)
        .where(ModelVersion.model == model_id, ModelVersion.version <= up_to)
        .order_by(ModelVersion.version)
        .tuples()
    )
    return [(count or 0, score) for count, score in rows]


async def attach_predictions(session_id: int, predicted_score: int) -> None:
    """Copy the session's model version's predictions of its documents and open it to
    annotators (ANNOTATING), in one transaction; nothing when the session is not
    PREDICTING."""
    async with atomic():
        row = await correction.locked(session_id)
        if row is None or row.status != Status.PREDICTING:
            return
        predictions = Prediction.select(Prediction.labels).where(
            Prediction.version == row.model_version_id,
            Prediction.comment == CorrectionDocument.comment,
        )
        await database.aexecute(
            CorrectionDocument.update(predicted=predictions).where(
                CorrectionDocument.session == session_id
            )
        )
        await correction.record(row, status=Status.ANNOTATING, predicted_score=predicted_score)
