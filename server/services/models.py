"""ModelService: models of a dataset, versions, predictions and tags."""

from __future__ import annotations

import math

import grpc

from corrigo.server.api import pagination
from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import Violations
from corrigo.server.domain import dataset_export as export
from corrigo.server.domain import labels, lookups
from corrigo.server.domain.uids import UID_FORMAT, split_uid
from corrigo.server.store import datasets, ml_models, sources
from corrigo.v1 import datasets_pb2, models_pb2, models_pb2_grpc
from corrigo.v1.comments_pb2 import Predictions
from corrigo.v1.models_pb2 import Model, ModelVersion

_TYPES = {v.number: v.name for v in Model.DESCRIPTOR.enum_types_by_name["Type"].values if v.number}
_MAX_NAMES = 1024


def model_proto(row: ml_models.MlModel, latest: int) -> Model:
    classes, label_names = ml_models.names_of(row)
    return Model(
        id=row.id,
        display_name=row.display_name,
        type=Model.Type.ValueType(row.type),
        classes=classes,
        labels=label_names,
        created_at=to_proto(row.created_at),
        latest_version=latest,
    )


def version_proto(row: ml_models.ModelVersion) -> ModelVersion:
    return ModelVersion(
        version=row.version,
        model_id=row.model_id,
        validation_score=row.validation_score,
        created_at=to_proto(row.created_at),
        labelled_documents=row.labelled_documents or 0,
    )


def _check_names(checks: Violations, field: str, names: list[str], hierarchical: bool) -> None:
    if not checks.check(len(names) <= _MAX_NAMES, field, f"at most {_MAX_NAMES}, got {len(names)}"):
        return
    seen: set[str] = set()
    for i, name in enumerate(names):
        if hierarchical:
            labels.check_name(checks, f"{field}[{i}]", name)
        else:
            checks.text(f"{field}[{i}]", name, 256, required=True)
        checks.check(name not in seen, f"{field}[{i}]", f"{name!r} given twice")
        seen.add(name)


class ModelService(models_pb2_grpc.ModelServiceServicer):
    async def CreateModel(
        self, request: models_pb2.CreateModelRequest, context: grpc.aio.ServicerContext
    ) -> Model:
        checks = Violations()
        given = request.model
        checks.text("model.display_name", given.display_name, 256, required=True)
        checks.enum("model.type", given.type, _TYPES)
        _check_names(checks, "model.classes", list(given.classes), hierarchical=False)
        _check_names(checks, "model.labels", list(given.labels), hierarchical=True)
        checks.raise_if_any()
        dataset = await lookups.named_dataset(request.dataset, "dataset")
        row = await ml_models.create_model(
            dataset.id, given.display_name, given.type, given.classes, given.labels
        )
        return model_proto(row, 0)

    async def GetModel(
        self, request: models_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> Model:
        checks = Violations()
        checks.stored_id("model_id", request.model_id)
        checks.raise_if_any()
        dataset = await lookups.named_dataset(request.dataset, "dataset")
        row = await ml_models.get_model(dataset.id, request.model_id)
        latest = await ml_models.latest_versions([row.id])
        return model_proto(row, latest.get(row.id, 0))

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.ListModelsResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=100, maximum=1000)
        checks.raise_if_any()
        dataset = await lookups.named_dataset(request.dataset, "dataset")
        page.bind(dataset.id)
        rows = await ml_models.list_models(dataset.id, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r.id)
        latest = await ml_models.latest_versions([r.id for r in rows])
        return models_pb2.ListModelsResponse(
            models=[model_proto(r, latest.get(r.id, 0)) for r in rows], next_page_token=token
        )

    async def CreateModelVersion(
        self, request: models_pb2.CreateModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> ModelVersion:
        checks = Violations()
        checks.stored_id("model_id", request.model_id)
        score = request.validation_score
        checks.check(
            math.isfinite(score) and 0 <= score <= 1,
            "validation_score",
            f"must be 0..1, got {score}",
        )
        checks.raise_if_any()
        dataset = await lookups.named_dataset(request.dataset, "dataset")
        model = await ml_models.get_model(dataset.id, request.model_id)
        return version_proto(await ml_models.create_version(dataset.id, model.id, score))

    async def UploadPredictions(
        self, request: models_pb2.UploadPredictionsRequest, context: grpc.aio.ServicerContext
    ) -> models_pb2.UploadPredictionsResponse:
        checks = Violations()
        checks.check(request.version >= 1, "version", f"must be >= 1, got {request.version}")
        checks.count("predictions", request.predictions, sources.MAX_SYNC, "comments")
        checks.raise_if_any()
        dataset = await lookups.named_dataset(request.dataset, "dataset")
        uids: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, item in enumerate(request.predictions):
            parsed = split_uid(item.uid)
            if checks.check(
                parsed is not None,
                f"predictions[{i}].uid",
                UID_FORMAT,
            ):
                assert parsed is not None
                uids.append(parsed)
            checks.check(item.uid not in seen, f"predictions[{i}].uid", "given twice")
            seen.add(item.uid)
            labels.check_predicted(
                checks, f"predictions[{i}].labels", item.labels, dataset.has_sentiment
            )
        checks.raise_if_any()
        version = await ml_models.find_version(dataset.id, request.version)
        in_dataset = await datasets.dataset_sources(dataset.id)
        allowed = {hex_id: in_dataset[hex_id] for hex_id, _ in uids if hex_id in in_dataset}
        found = await sources.comments_by_uid(allowed, [u for u in uids if u[0] in allowed])
        rows = []
        for i, item in enumerate(request.predictions):
            comment_id = found.get(split_uid(item.uid))  # type: ignore[arg-type]
            if checks.check(
                comment_id is not None,
                f"predictions[{i}].uid",
                f"comment {item.uid!r} is not in the dataset's sources",
            ):
                assert comment_id is not None
                top = max((label.probability for label in item.labels), default=None)
                rows.append((comment_id, Predictions(labels=item.labels).SerializeToString(), top))
        checks.raise_if_any()
        await ml_models.store_predictions(version.id, rows)
        return models_pb2.UploadPredictionsResponse(stored=len(rows))

    async def SetModelTag(
        self, request: models_pb2.SetModelTagRequest, context: grpc.aio.ServicerContext
    ) -> datasets_pb2.ModelTag:
        checks = Violations()
        checks.check(
            bool(export.TAG_NAME.match(request.name)),
            "name",
            "must be 1..32 lower-case letters, digits, '-' or '_', starting with a letter",
        )
        checks.check(request.version >= 1, "version", f"must be >= 1, got {request.version}")
        checks.raise_if_any()
        dataset = await lookups.named_dataset(request.dataset, "dataset")
        version = await ml_models.find_version(dataset.id, request.version)
        tag = await ml_models.set_tag(dataset.id, request.name, version)
        return datasets_pb2.ModelTag(
            name=request.name, version=version.version, updated_at=to_proto(tag.updated_at)
        )
