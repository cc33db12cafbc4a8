"""`python -m tests.bench.write_cost [--comments N] [--out FILE]`: what the three bulk
writes cost, each on a fresh database and server: SyncComments (1,000 comments a call),
StreamUpdateLabellings (4,096 a chunk) and UploadPredictions (1,000 a call) of N
comments, on SQLite and (with CORRIGO_BENCH_POSTGRES_URL) PostgreSQL.

It uses only the generated stubs and `tests.processes`, so it runs unchanged in an older
checkout: copy it there to compare two commits in turns (tests/bench/README.md, "What
the change log costs writes").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg2

from corrigo.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    datasets_pb2,
    datasets_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    sources_pb2,
    sources_pb2_grpc,
)
from corrigo.v1.comments_pb2 import Comment, CommentMessage, Label, MessageText, PredictedLabel
from tests.processes import ServerProcess, bootstrap

OWNER, SOURCE, DATASET = "bench", "inbox", "ds"
LABELS = [f"Topic > L{i}" for i in range(8)]
SYNC_CALL = 1000
LABELLING_CHUNK = 4096
PREDICTION_CALL = 1000
_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def _comments(count: int) -> Iterator[list[Comment]]:
    for start in range(0, count, SYNC_CALL):
        batch = []
        for i in range(start, min(start + SYNC_CALL, count)):
            text = MessageText(text=f"message {i} " + "x" * 180)
            made = Comment(id=f"c{i:07d}", messages=[CommentMessage(body=text)])
            made.timestamp.FromSeconds(1_600_000_000 + i)
            batch.append(made)
        yield batch


def _timed(work: Callable[[], None]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def _run(target: str, token: str, count: int) -> dict[str, float]:
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(target, options=_OPTIONS) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        sources = sources_pb2_grpc.SourceServiceStub(channel)
        datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        models = models_pb2_grpc.ModelServiceStub(channel)
        admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=OWNER)),
            metadata=metadata,
        )
        source = sources.CreateSource(
            sources_pb2.CreateSourceRequest(owner=OWNER, name=SOURCE, source=sources_pb2.Source()),
            metadata=metadata,
        ).source
        datasets.CreateDataset(
            datasets_pb2.CreateDatasetRequest(
                owner=OWNER, name=DATASET, dataset=datasets_pb2.Dataset(source_ids=[source.id])
            ),
            metadata=metadata,
        )
        datasets.CreateLabelDefs(
            datasets_pb2.CreateLabelDefsRequest(
                owner=OWNER,
                name=DATASET,
                label_defs=[datasets_pb2.LabelDef(name=n) for n in LABELS],
            ),
            metadata=metadata,
        )
        calls = [
            sources_pb2.SyncCommentsRequest(owner=OWNER, name=SOURCE, comments=batch)
            for batch in _comments(count)
        ]

        def sync() -> None:
            for call in calls:
                sources.SyncComments(call, metadata=metadata)

        chunks = [
            datasets_pb2.StreamUpdateLabellingsRequest(
                owner=OWNER,
                name=DATASET,
                chunk=number,
                labellings=[
                    datasets_pb2.LabellingUpdate(
                        comment_uid=f"{source.id}.c{i:07d}",
                        assigned=[Label(name=LABELS[i % len(LABELS)], sentiment="positive")],
                    )
                    for i in range(start, min(start + LABELLING_CHUNK, count))
                ],
            )
            for number, start in enumerate(range(0, count, LABELLING_CHUNK))
        ]

        def label() -> None:
            acknowledged = list(datasets.StreamUpdateLabellings(iter(chunks), metadata=metadata))
            assert len(acknowledged) == len(chunks), (len(acknowledged), len(chunks))

        model = models.CreateModel(
            models_pb2.CreateModelRequest(
                owner=OWNER,
                dataset=DATASET,
                model=models_pb2.Model(display_name="bench", type=models_pb2.Model.LABEL),
            ),
            metadata=metadata,
        )
        version = models.CreateModelVersion(
            models_pb2.CreateModelVersionRequest(
                owner=OWNER, dataset=DATASET, model_id=model.id, validation_score=0.9
            ),
            metadata=metadata,
        ).version
        uploads = [
            models_pb2.UploadPredictionsRequest(
                owner=OWNER,
                dataset=DATASET,
                version=version,
                predictions=[
                    models_pb2.CommentPredictions(
                        uid=f"{source.id}.c{i:07d}",
                        labels=[
                            PredictedLabel(name=LABELS[(i + k) % len(LABELS)], probability=0.3 * k)
                            for k in range(1, 4)
                        ],
                    )
                    for i in range(start, min(start + PREDICTION_CALL, count))
                ],
            )
            for start in range(0, count, PREDICTION_CALL)
        ]

        def predict() -> None:
            for call in uploads:
                models.UploadPredictions(call, metadata=metadata)

        return {
            "sync_cps": count / _timed(sync),
            "stream_labellings_lps": count / _timed(label),
            "upload_predictions_ps": count / _timed(predict),
        }


def _fresh_postgres(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    conn.close()


def measure(backend: str, url: str, count: int, workdir: Path) -> dict[str, float]:
    if backend == "postgres":
        _fresh_postgres(url)
    token = bootstrap(url, "bench", "admin@bench.example")
    server = ServerProcess(url, workdir / f"{backend}.log", grace=2)
    try:
        server.wait_serving()
        return _run(server.target, token, count)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=50_000)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        backends = [("sqlite", f"sqlite:///{workdir / 'bench.db'}")]
        if url := os.environ.get("CORRIGO_BENCH_POSTGRES_URL"):
            backends.append(("postgres", url))
        for backend, url in backends:
            figures[backend] = measure(backend, url, args.comments, workdir)
            print(backend, {k: round(v) for k, v in figures[backend].items()}, flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
