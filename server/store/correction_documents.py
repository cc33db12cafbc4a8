"""A correction session's documents: reading them a page at a time, and submitting the
correction of one, which becomes its labelling in the dataset."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from corrigo.server.api.errors import FailedPrecondition, NotFound
from corrigo.server.store import correction, datasets
from corrigo.server.store.correction import CorrectionDocument, CorrectionSession, Status
from corrigo.server.store.database import atomic, database, retried, utcnow
from corrigo.server.store.datasets import Labelling
from corrigo.server.store.sources import Comment, Source


@dataclass(frozen=True)
class DocumentRow:
    position: int
    comment_id: int
    # The stored, serialized Comment.
    body: bytes
    # Serialized Predictions, AssignedLabels, AssignedLabels (None when absent).
    predicted: bytes | None
    assigned: bytes | None
    dismissed: bytes | None
    corrected_at: datetime.datetime | None


def _select(dataset_id: int) -> peewee.Select:
    """Documents with their comment and their labelling in the dataset: one query."""
    labelling = (Labelling.dataset == dataset_id) & (
        Labelling.comment == CorrectionDocument.comment
    )
    return (
        CorrectionDocument.select(
            CorrectionDocument.position,
            CorrectionDocument.comment,
            Comment.body,
            CorrectionDocument.predicted,
            Labelling.assigned,
            Labelling.dismissed,
            CorrectionDocument.corrected_at,
        )
        .join(Comment, on=(CorrectionDocument.comment == Comment.id))
        .join(Source, on=(Comment.source == Source.id))
        .join(Labelling, peewee.JOIN.LEFT_OUTER, on=labelling)
        .where(*Source.present())
    )


def _row(values: tuple[Any, ...], retired: Sequence[str]) -> DocumentRow:
    """A document as readers see it: its labelling without deleted labels still being
    pruned (`retired`)."""
    position, comment_id, body, predicted, assigned, dismissed, corrected_at = values
    if assigned is not None:
        kept = datasets.pruned(bytes(assigned), bytes(dismissed), retired)
        assigned, dismissed = kept or (None, None)
    return DocumentRow(
        position,
        comment_id,
        bytes(body),
        None if predicted is None else bytes(predicted),
        assigned,
        dismissed,
        corrected_at,
    )


async def page(
    session_id: int, dataset_id: int, after_position: int, limit: int
) -> list[DocumentRow]:
    rows = await database.list(
        _select(dataset_id)
        .where(
            CorrectionDocument.session == session_id,
            CorrectionDocument.position > after_position,
        )
        .order_by(CorrectionDocument.position)
        .limit(limit)
        .tuples()
    )
    retired = await datasets.retired_names(dataset_id) if rows else []
    return [_row(r, retired) for r in rows]


async def document(session_id: int, dataset_id: int, comment_id: int) -> DocumentRow | None:
    rows = await database.list(
        _select(dataset_id)
        .where(CorrectionDocument.session == session_id, CorrectionDocument.comment == comment_id)
        .tuples()
    )
    return _row(rows[0], await datasets.retired_names(dataset_id)) if rows else None


def progress(corrected: int, total: int) -> float:
    """The percentage corrected, rounded down to one decimal: 100 only when all are."""
    return (corrected * 1000 // total) / 10 if total else 0.0


async def submit(
    session_id: int, comment_id: int, assigned: bytes, dismissed: bytes
) -> CorrectionSession:
    """Write the correction as the document's labelling in the dataset, mark it
    corrected, and record the session's new progress (FINISHED, with its documents
    released, once every document is corrected), in one transaction. Answers the
    session as it is after it."""

    async def attempt() -> CorrectionSession:
        async with atomic():
            row = await correction.locked(session_id)
            if row is None:
                raise NotFound(f"correction session {session_id} not found")
            if row.status != Status.ANNOTATING:
                status = Status.Name(Status.ValueType(row.status))
                raise FailedPrecondition(
                    f"correction session {session_id} is {status}: "
                    "corrections are taken while it is ANNOTATING"
                )
            marked = await database.aexecute(
                CorrectionDocument.update(corrected_at=utcnow()).where(
                    CorrectionDocument.session == session_id,
                    CorrectionDocument.comment == comment_id,
                )
            )
            if not marked:
                raise NotFound(f"the document is not in correction session {session_id}")
            await datasets.set_labelling(row.dataset_id, comment_id, assigned, dismissed)
            total, corrected = (
                await database.list(
                    CorrectionDocument.select(
                        peewee.fn.COUNT(CorrectionDocument.comment),
                        peewee.fn.COUNT(CorrectionDocument.corrected_at),
                    )
                    .where(CorrectionDocument.session == session_id)
                    .tuples()
                )
            )[0]
            fields: dict[str, object] = {}
            if total != row.document_count:
                # Documents whose comment was deleted have left the session.
                fields["document_count"] = total
            if progress(corrected, total) != row.progress:
                fields["progress"] = progress(corrected, total)
            if corrected == total:
                fields.update(status=Status.FINISHED, finished=utcnow())
                await correction.release_claims(session_id)
            if fields:
                await correction.record(row, **fields)
        return row

    # A dataset deleted meanwhile can deadlock with it on PostgreSQL: tried again, it
    # answers NOT_FOUND or FAILED_PRECONDITION as the delete left things.
    return await retried(attempt)
