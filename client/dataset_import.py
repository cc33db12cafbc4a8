"""`corrigo import OWNER/DATASET FILE`: load an export file (`corrigo export`'s JSONL or
Parquet, or Communications Mining's export JSON lines, the same shape) into a dataset.

Each comment goes into a source of the target project standing for the source it came
from (`<prefix><its source_id>`, created when missing and added to the dataset), its
assigned labels into the taxonomy and its labelling, and its predictions into the model
version named on the command line. The file is read once, in chunks of up to 4,096
comments; each chunk is synced, labelled (one transaction) and predicted in turn, and
every step is idempotent, so an interrupted import run again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, json_format
from tqdm import tqdm

from corrigo.client import Client, fields, records
from corrigo.client.errors import CorrigoError
from corrigo.client.sync import chunks_of, count_lines, json_lines
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Comment, Label, PredictedLabel

CHUNK = 4096


@dataclass
class Record:
    """One exported comment: the comment, its assigned labels and its predictions."""

    comment: Comment
    assigned: list[Label]
    predicted: list[PredictedLabel]


def _record(data: Any) -> Record:
    """The record of one export line."""
    if not isinstance(data, dict) or not isinstance(data.get("comment"), dict):
        raise json_format.ParseError('expected an export line: {"comment": {...}}')
    comment = records.comment_from_dict(data["comment"])
    assigned = data.get("annotations", {}).get("labels", {}).get("assigned", [])
    predicted = data.get("predictions", {}).get("labels", [])
    return Record(
        comment,
        [records.message_from_dict(label, Label) for label in assigned],
        [records.message_from_dict(label, PredictedLabel) for label in predicted],
    )


def read_jsonl(path: Path) -> Iterator[Record]:
    return json_lines(path, "corrigo import", _record)


def _from_row(row: dict[str, Any]) -> Record:
    """A Parquet row (`parquet_export`'s schema) as the record it was written from."""
    from corrigo.client import parquet_export

    result = parquet_export.result_from_row(row)
    return Record(
        result.comment, list(result.annotations.labels.assigned), list(result.predictions.labels)
    )


def read_parquet(path: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(
            "corrigo import: Parquet needs pyarrow: pip install 'corrigo[parquet]'"
        ) from None
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
        for row in batch.to_pylist():
            yield _from_row(row)


def count_records(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return count_lines(path)


@dataclass
class ImportTotals:
    comments: int = 0
    labellings: int = 0
    predictions: int = 0
    skipped_predictions: int = 0
    sources: dict[str, str] = field(default_factory=dict)


def _missing(call: Callable[[Any], Any], request: Any) -> bool:
    """Whether `call(request)` answers NOT_FOUND (any other error is raised)."""
    try:
        call(request)
    except CorrigoError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            return True
        raise
    return False


class _Target:
    """The dataset being filled, its sources (by original source id) and taxonomy."""

    def __init__(self, client: Client, owner: str, name: str, prefix: str) -> None:
        self.client, self.owner, self.name, self.prefix = client, owner, name, prefix
        self.labels: set[str] = set()
        self.sources: dict[str, str] = {}
        self.dataset: datasets_pb2.Dataset | None = None
        get = datasets_pb2.GetDatasetRequest(owner=owner, name=name)
        if not _missing(client.datasets.GetDataset, get):
            self.dataset = client.datasets.GetDataset(get).dataset

    def source_for(self, original: str, has_sentiment: bool) -> str:
        """The target source's id standing for `original`, in the dataset."""
        if original in self.sources:
            return self.sources[original]
        name = f"{self.prefix}{original}"
        sources = self.client.sources
        get = sources_pb2.GetSourceRequest(owner=self.owner, name=name)
        if _missing(sources.GetSource, get):
            create = sources_pb2.CreateSourceRequest(
                owner=self.owner, name=name, source=sources_pb2.Source()
            )
            sources.CreateSource(create)
        source_id: str = sources.GetSource(get).source.id
        self.sources[original] = source_id
        if self.dataset is None:
            made = datasets_pb2.Dataset(source_ids=[source_id])
            made.has_sentiment.value = has_sentiment
            self.dataset = self.client.datasets.CreateDataset(
                datasets_pb2.CreateDatasetRequest(owner=self.owner, name=self.name, dataset=made),
            ).dataset
        elif source_id not in self.dataset.source_ids:
            self.dataset = self.client.datasets.UpdateDataset(
                datasets_pb2.UpdateDatasetRequest(
                    owner=self.owner,
                    name=self.name,
                    dataset=datasets_pb2.Dataset(source_ids=[*self.dataset.source_ids, source_id]),
                    update_mask=field_mask_pb2.FieldMask(paths=["source_ids"]),
                ),
            ).dataset
        return source_id

    def add_labels(self, names: set[str]) -> None:
        fresh = sorted(names - self.labels)
        for start in range(0, len(fresh), 1024):
            self.client.datasets.CreateLabelDefs(
                datasets_pb2.CreateLabelDefsRequest(
                    owner=self.owner,
                    name=self.name,
                    label_defs=[datasets_pb2.LabelDef(name=n) for n in fresh[start : start + 1024]],
                ),
            )
        self.labels |= names


def _sentiment(chunk: list[Record]) -> bool:
    """Whether a new dataset has sentiment: as the assigned labels of its first chunk
    have it, or by default (true) when they have none."""
    assigned = [label for r in chunk for label in r.assigned]
    return any(label.sentiment for label in assigned) if assigned else True


def new_model_version(client: Client, owner: str, dataset: str, name: str) -> int:
    model = client.models.CreateModel(
        models_pb2.CreateModelRequest(
            owner=owner,
            dataset=dataset,
            model=models_pb2.Model(display_name=name, type=models_pb2.Model.LABEL),
        ),
    )
    version = client.models.CreateModelVersion(
        models_pb2.CreateModelVersionRequest(owner=owner, dataset=dataset, model_id=model.id),
    )
    return int(version.version)


def import_file(
    client: Client,
    owner: str,
    name: str,
    path: Path,
    *,
    model_version: int = 0,
    new_model: str = "",
    source_prefix: str = "imported-",
    progress: bool = True,
) -> ImportTotals:
    """Load `path` (Parquet when it ends in `.parquet`, else JSON lines) into the dataset
    `owner/name` (created when missing). Predictions go into `model_version`, or into a
    new model `new_model`'s first version; with neither they are counted as skipped."""
    read = read_parquet if path.suffix == ".parquet" else read_jsonl
    items = read(path)
    target = _Target(client, owner, name, source_prefix)
    totals = ImportTotals(sources=target.sources)
    bar = tqdm(
        desc=f"import {owner}/{name}",
        total=count_records(path),
        unit=" items",
        disable=not progress,
    )
    version = model_version
    for chunk in chunks_of(items, CHUNK, lambda r: (r.comment.source_id, r.comment.id)):
        by_source: dict[str, list[Record]] = {}
        for record in chunk:
            by_source.setdefault(record.comment.source_id, []).append(record)
        for original, part in by_source.items():
            source_id = target.source_for(original, _sentiment(chunk))
            _import_part(client, target, original, source_id, part, totals)
            predicted = [r for r in part if r.predicted]
            if predicted and not version and new_model:
                version = new_model_version(client, owner, name, new_model)
            if predicted and version:
                client.models.UploadPredictions(
                    models_pb2.UploadPredictionsRequest(
                        owner=owner,
                        dataset=name,
                        version=version,
                        predictions=[
                            models_pb2.CommentPredictions(
                                uid=f"{source_id}.{r.comment.id}", labels=r.predicted
                            )
                            for r in predicted
                        ],
                    ),
                )
                totals.predictions += len(predicted)
            elif predicted:
                totals.skipped_predictions += len(predicted)
        bar.update(len(chunk))
    bar.close()
    return totals


def _import_part(
    client: Client,
    target: _Target,
    original: str,
    source_id: str,
    part: list[Record],
    totals: ImportTotals,
) -> None:
    """One source's share of a chunk: its comments synced, then their labellings set."""
    comments = []
    for record in part:
        comment = Comment()
        comment.CopyFrom(record.comment)
        fields.clear_output_only(comment)  # an imported comment gets the server's own
        comments.append(comment)
    source_name = f"{target.prefix}{original}"
    client.sources.SyncComments(
        sources_pb2.SyncCommentsRequest(owner=target.owner, name=source_name, comments=comments),
    )
    totals.comments += len(comments)
    labelled = [r for r in part if r.assigned]
    if not labelled:
        return
    target.add_labels({label.name for r in labelled for label in r.assigned})
    client.datasets.BatchUpdateLabellings(
        datasets_pb2.BatchUpdateLabellingsRequest(
            owner=target.owner,
            name=target.name,
            labellings=[
                datasets_pb2.LabellingUpdate(
                    comment_uid=f"{source_id}.{r.comment.id}", assigned=r.assigned
                )
                for r in labelled
            ],
        ),
    )
    totals.labellings += len(labelled)
