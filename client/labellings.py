"""`corrigo labels import`: set many comments' labellings from JSONL through
StreamUpdateLabellings (a transaction per chunk, resent after UNAVAILABLE as `corrigo
sync` does: setting a labelling twice changes nothing)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from tqdm import tqdm

from corrigo.client import records
from corrigo.client.sync import count_lines, json_lines, stream_chunks
from corrigo.v1 import datasets_pb2, datasets_pb2_grpc
from corrigo.v1.datasets_pb2 import LabellingUpdate

DEFAULT_CHUNK = 1024


def labelling_from_json(data: Any) -> LabellingUpdate:
    """A LabellingUpdate from its JSON (`{"comment_uid", "assigned", "dismissed"}`) or
    from a `corrigo export` line (the comment's uid and its assigned labels)."""
    if not isinstance(data, dict):
        raise json_format.ParseError("expected a JSON object")
    comment = data.get("comment")
    if isinstance(comment, dict):
        assigned = data.get("annotations", {}).get("labels", {}).get("assigned", [])
        data = {"comment_uid": comment.get("uid", ""), "assigned": assigned}
    return records.message_from_dict(data, LabellingUpdate)


def read_labellings(path: Path) -> Iterator[LabellingUpdate]:
    return json_lines(path, "corrigo labels import", labelling_from_json)


@dataclass
class ImportTotals:
    updated: int = 0
    chunks: int = 0


def import_file(
    stub: datasets_pb2_grpc.DatasetServiceStub,
    owner: str,
    dataset: str,
    path: Path,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = True,
) -> ImportTotals:
    items = read_labellings(path)
    totals = ImportTotals()
    bar = tqdm(
        desc=f"labels {owner}/{dataset}",
        total=count_lines(path),
        unit=" items",
        disable=not progress,
    )

    def chunks() -> Iterator[datasets_pb2.StreamUpdateLabellingsRequest]:
        for number in itertools.count():
            batch = list(itertools.islice(items, chunk_size))
            if not batch:
                return
            yield datasets_pb2.StreamUpdateLabellingsRequest(
                owner=owner, name=dataset, chunk=number, labellings=batch
            )

    def acknowledged(
        ack: datasets_pb2.StreamUpdateLabellingsResponse,
        chunk: datasets_pb2.StreamUpdateLabellingsRequest,
    ) -> None:
        totals.updated += ack.updated
        totals.chunks += 1
        bar.update(len(chunk.labellings))

    stream_chunks(stub.StreamUpdateLabellings, chunks(), acknowledged)
    bar.close()
    return totals
