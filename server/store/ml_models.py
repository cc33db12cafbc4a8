"""Models of a dataset, their versions (numbered per dataset), predictions and tags.

A prediction row keeps a version's labels for one comment as a serialized
`Predictions` message, merged into the export's answer as it is.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import peewee

from corrigo.server.api.errors import Aborted, NotFound
from corrigo.server.store.database import BaseModel, Sql, atomic, database, is_sqlite, utcnow, write
from corrigo.server.store.datasets import Dataset, DatasetSource, Labelling, dataset_ref
from corrigo.server.store.integrity import Refers, Unique
from corrigo.server.store.positions import stamped_insert
from corrigo.server.store.sources import BytesField, Comment
from corrigo.v1 import errors_pb2


class MlModel(BaseModel):
    id = peewee.AutoField()
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE")
    display_name = peewee.CharField(max_length=256)
    type = peewee.IntegerField()
    # JSON arrays of names.
    classes = peewee.TextField()
    labels = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "model"


class ModelVersion(BaseModel):
    id = peewee.AutoField()
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    model = peewee.ForeignKeyField(MlModel, on_delete="CASCADE")
    version = peewee.IntegerField()
    validation_score = peewee.DoubleField()
    created_at = peewee.DateTimeField(default=utcnow)
    # How many of the dataset's documents had assigned labels when it was recorded.
    labelled_documents = peewee.IntegerField(null=True)

    class Meta:
        indexes = ((("dataset", "version"), True),)


class Prediction(BaseModel):
    version = peewee.ForeignKeyField(ModelVersion, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")
    labels = BytesField()
    # The highest probability among `labels` (None when it has none): what uncertainty
    # sampling orders by, without parsing `labels`.
    top_probability = peewee.DoubleField(null=True)
    # The position of the write that last changed the prediction (`positions`).
    change_tx = peewee.BigIntegerField()

    class Meta:
        primary_key = peewee.CompositeKey("version", "comment")


class ModelTag(BaseModel):
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    name = peewee.CharField(max_length=32)
    version = peewee.ForeignKeyField(ModelVersion, on_delete="CASCADE")
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        primary_key = peewee.CompositeKey("dataset", "name")


def names_of(row: MlModel) -> tuple[list[str], list[str]]:
    """(classes, labels) of a model row."""
    return json.loads(row.classes), json.loads(row.labels)


async def create_model(
    dataset_id: int, display_name: str, type_: int, classes: Sequence[str], labels: Sequence[str]
) -> MlModel:
    async with atomic(dataset_ref(dataset_id, "dataset")):
        return await MlModel.acreate(
            dataset=dataset_id,
            display_name=display_name,
            type=type_,
            classes=json.dumps(list(classes)),
            labels=json.dumps(list(labels)),
        )


async def get_model(dataset_id: int, model_id: int) -> MlModel:
    row = await MlModel.aget_or_none(MlModel.id == model_id, MlModel.dataset == dataset_id)
    if row is None:
        raise NotFound(f"model {model_id} not found in the dataset")
    return row


async def list_models(dataset_id: int, after_id: int, limit: int) -> list[MlModel]:
    return await database.list(
        MlModel.select()
        .where(MlModel.dataset == dataset_id, MlModel.id > after_id)
        .order_by(MlModel.id)
        .limit(limit)
    )


async def latest_versions(model_ids: Sequence[int]) -> dict[int, int]:
    """model id -> its highest version number, for the models that have versions."""
    if not model_ids:
        return {}
    rows = await database.list(
        ModelVersion.select(ModelVersion.model, peewee.fn.MAX(ModelVersion.version))
        .where(ModelVersion.model.in_(list(model_ids)))
        .group_by(ModelVersion.model)
        .tuples()
    )
    return dict(rows)


async def create_version(dataset_id: int, model_id: int, score: float) -> ModelVersion:
    """The next version number of the dataset, recording how many labelled documents the
    dataset has now. Two concurrent creations cannot take the same number (unique
    index): the loser gets ABORTED and may retry."""
    taken = Aborted(
        "another version was created at the same time: retry",
        reason=errors_pb2.CONCURRENT_CHANGE,
    )
    async with atomic(
        Unique(ModelVersion, [ModelVersion.dataset, ModelVersion.version], taken),
        dataset_ref(dataset_id, "dataset"),
        Refers("model_id", "model", MlModel, [model_id]),
    ):
        current = await database.scalar(
            ModelVersion.select(peewee.fn.MAX(ModelVersion.version)).where(
                ModelVersion.dataset == dataset_id
            )
        )
        # Only comments of the sources the dataset shows now, as a deleted source's
        # labellings stay until its purge and a removed source's for good.
        labelled = await database.scalar(
            Labelling.select(peewee.fn.COUNT(Labelling.comment))
            .join(Comment, on=(Comment.id == Labelling.comment))
            .join(
                DatasetSource,
                on=(DatasetSource.source == Comment.source) & (DatasetSource.dataset == dataset_id),
            )
            .where(Labelling.dataset == dataset_id, peewee.fn.LENGTH(Labelling.assigned) > 0)
        )
        return await ModelVersion.acreate(
            dataset=dataset_id,
            model=model_id,
            version=(current or 0) + 1,
            validation_score=score,
            labelled_documents=labelled or 0,
        )


async def find_version(dataset_id: int, version: int) -> ModelVersion:
    row = await ModelVersion.aget_or_none(
        ModelVersion.dataset == dataset_id, ModelVersion.version == version
    )
    if row is None:
        raise NotFound(f"model version {version} not found in the dataset")
    return row


async def version_number(version_id: int) -> int | None:
    """The number of the model version `version_id`; None once it is deleted."""
    row = await ModelVersion.aget_or_none(ModelVersion.id == version_id)
    return row.version if row else None


async def latest_version(dataset_id: int) -> ModelVersion | None:
    rows = await database.list(
        ModelVersion.select()
        .where(ModelVersion.dataset == dataset_id)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    return rows[0] if rows else None


async def tagged_version(dataset_id: int, tag: str) -> ModelVersion:
    rows = await database.list(
        ModelVersion.select(ModelVersion)
        .join(ModelTag, on=(ModelTag.version == ModelVersion.id))
        .where(ModelTag.dataset == dataset_id, ModelTag.name == tag)
    )
    if not rows:
        raise NotFound(f"model tag {tag!r} not found in the dataset")
    return rows[0]


_PREDICTION_COLUMNS = "version_id, comment_id, labels, top_probability"
_PREDICTION_UPSERT_TAIL = (
    " ON CONFLICT (version_id, comment_id) DO UPDATE SET labels = EXCLUDED.labels, "
    "top_probability = EXCLUDED.top_probability, change_tx = EXCLUDED.change_tx"
)
# Predictions per statement (4 parameters each).
_PREDICTION_ROWS = 1024


@functools.lru_cache(maxsize=16)
def _prediction_upsert(rows: int, sqlite: bool) -> Sql:
    return stamped_insert(
        "prediction", _PREDICTION_COLUMNS, 4, rows, _PREDICTION_UPSERT_TAIL, sqlite
    )


async def store_predictions(
    version_id: int, rows: Sequence[tuple[int, bytes, float | None]]
) -> None:
    """Replace the version's predictions of these comments, in one transaction. Each row
    is (comment id, serialized Predictions, its top probability or None). (Written out:
    Peewee renders a thousand-row upsert slower than the database runs it.)"""
    sqlite = is_sqlite()
    async with atomic(
        Refers("version", "model version", ModelVersion, [version_id], shown=False),
        Refers("predictions.uid", "comment", Comment, [c for c, _, _ in rows], shown=False),
    ):
        for start in range(0, len(rows), _PREDICTION_ROWS):
            part = rows[start : start + _PREDICTION_ROWS]
            params = [value for c, b, top in part for value in (version_id, c, b, top)]
            await write(_prediction_upsert(len(part), sqlite), params)


async def set_tag(dataset_id: int, name: str, version: ModelVersion) -> ModelTag:
    now = utcnow()
    async with atomic(
        dataset_ref(dataset_id, "dataset"),
        Refers("version", "model version", ModelVersion, {version.id: str(version.version)}),
    ):
        await database.aexecute(
            ModelTag.insert(
                dataset=dataset_id, name=name, version=version.id, updated_at=now
            ).on_conflict(
                conflict_target=[ModelTag.dataset, ModelTag.name],
                preserve=[ModelTag.version, ModelTag.updated_at],
            )
        )
    return ModelTag(dataset=dataset_id, name=name, version=version.id, updated_at=now)


async def list_tags(dataset_id: int) -> list[tuple[str, int, object]]:
    """(name, version number, updated_at) by name."""
    return await database.list(
        ModelTag.select(ModelTag.name, ModelVersion.version, ModelTag.updated_at)
        .join(ModelVersion)
        .where(ModelTag.dataset == dataset_id)
        .order_by(ModelTag.name)
        .tuples()
    )
