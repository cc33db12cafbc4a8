"""Builders shared by the dataset, source, model and export tests."""

from __future__ import annotations

import datetime
from typing import Any

from google.protobuf import json_format

from corrigo.client import AsyncClient
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Comment, CommentMessage, MessageText

EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


def comment(comment_id: str, seconds: int = 0, text: str = "hello", **extra: Any) -> Comment:
    """A minimal valid comment `seconds` after 2020-01-01T00:00:00Z."""
    made = Comment(
        id=comment_id,
        messages=[CommentMessage(body=MessageText(text=text), **{"from": "a@b.c"})],
        **extra,
    )
    made.timestamp.FromDatetime(EPOCH + datetime.timedelta(seconds=seconds))
    return made


async def source(client: AsyncClient, owner: str, name: str = "mailbox") -> sources_pb2.Source:
    answer = await client.sources.CreateSource(
        sources_pb2.CreateSourceRequest(owner=owner, name=name, source=sources_pb2.Source())
    )
    return answer.source


async def dataset(
    client: AsyncClient, owner: str, source_ids: list[str], name: str = "ds", **fields: Any
) -> datasets_pb2.Dataset:
    answer = await client.datasets.CreateDataset(
        datasets_pb2.CreateDatasetRequest(
            owner=owner,
            name=name,
            dataset=datasets_pb2.Dataset(source_ids=source_ids, **fields),
        )
    )
    return answer.dataset


async def sync(
    client: AsyncClient, owner: str, source_name: str, comments: list[Comment]
) -> sources_pb2.SyncCommentsResponse:
    total = sources_pb2.SyncCommentsResponse()
    for start in range(0, len(comments), 4096):
        answer = await client.sources.SyncComments(
            sources_pb2.SyncCommentsRequest(
                owner=owner, name=source_name, comments=comments[start : start + 4096]
            )
        )
        total.new += answer.new
        total.updated += answer.updated
        total.unchanged += answer.unchanged
    return total


def label_defs(owner: str, names: list[str]) -> datasets_pb2.CreateLabelDefsRequest:
    """A CreateLabelDefs request for dataset `ds` of `owner`."""
    return datasets_pb2.CreateLabelDefsRequest(
        owner=owner, name="ds", label_defs=[datasets_pb2.LabelDef(name=n) for n in names]
    )


async def model_version(
    client: AsyncClient, owner: str, dataset_name: str, score: float = 0.9
) -> models_pb2.ModelVersion:
    model = await client.models.CreateModel(
        models_pb2.CreateModelRequest(
            owner=owner,
            dataset=dataset_name,
            model=models_pb2.Model(display_name="m", type=models_pb2.Model.LABEL),
        )
    )
    return await client.models.CreateModelVersion(
        models_pb2.CreateModelVersionRequest(
            owner=owner, dataset=dataset_name, model_id=model.id, validation_score=score
        )
    )


async def predicted(
    client: AsyncClient, owner: str, dataset_name: str, predictions: list[Any]
) -> models_pb2.ModelVersion:
    """A new model version of the dataset holding `predictions` (CommentPredictions)."""
    version = await model_version(client, owner, dataset_name)
    await client.models.UploadPredictions(
        models_pb2.UploadPredictionsRequest(
            owner=owner, dataset=dataset_name, version=version.version, predictions=predictions
        )
    )
    return version


async def export_all(
    client: AsyncClient, request: datasets_pb2.ExportDatasetRequest
) -> list[datasets_pb2.ExportDatasetResponse]:
    """Every page of a unary export."""
    pages = []
    while True:
        page = await client.datasets.ExportDataset(request)
        pages.append(page)
        if not page.continuation:
            return pages
        request.continuation = page.continuation


def uids(pages: list[Any]) -> list[str]:
    return [c.comment.uid for page in pages for c in page.comments]


def as_json(message: Any) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
