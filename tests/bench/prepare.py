"""A fresh database, a `corrigo serve` process on it, and the benchmark's data.

Comments and predictions go in through the server's own bulk RPCs (StreamSyncComments,
chunks of 4096, timed: that is the bulk-sync figure; UploadPredictions, 4096 a call).
Labellings and improvement sessions have no bulk RPC, so they are written directly
through the store's models in large transactions, before the figures run.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from corrigo.client import Client
from corrigo.server.store import database
from corrigo.server.store.datasets import Labelling
from corrigo.server.store.improvement import ImprovementBatch, ImprovementEntry, ImprovementState
from corrigo.server.store.practice_sessions import PracticeEvent, PracticeSession, PracticeSetting
from corrigo.server.store.sources import Comment, Source
from corrigo.v1 import admin_pb2, datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.improvement_pb2 import ImprovementBatch as BatchProto
from corrigo.v1.practice_pb2 import PracticeEvent as EventProto
from corrigo.v1.practice_pb2 import PracticeSession as SessionProto
from tests.bench import corpus, raw
from tests.bench.sizes import Sizes
from tests.processes import ServerProcess, bootstrap

OWNER = "bench"
SOURCE = "mailbox"
DATASET = "export"
# Rows per transaction, and per statement, when writing through the store (SQLite takes
# at most 32,766 parameters a statement).
_STORE_BATCH = 50_000
_STATEMENT_ROWS = 4_000


@dataclass
class Prepared:
    server: ServerProcess
    token: str
    # Seconds each loading step took, and the bulk sync's rate (a figure).
    timings: dict[str, float]
    stream_sync_rate: float

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


def fresh_database(url: str) -> None:
    """Empty the benchmark's database: remove the SQLite file, or recreate PostgreSQL's
    public schema."""
    if database.is_postgres(url):
        import psycopg2

        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        conn.close()
        return
    path = Path(database.sqlite_path(url))
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _chunks(sizes: Sizes) -> Iterator[bytes]:
    """The export dataset's comments as serialized StreamSyncComments chunks."""
    batch: list[corpus.Comment] = []
    number = 0
    for made in corpus.comments(sizes.comments, seed=1):
        batch.append(made)
        if len(batch) == sizes.chunk:
            yield _chunk(number, batch)
            batch, number = [], number + 1
    if batch:
        yield _chunk(number, batch)


def _chunk(number: int, batch: list[corpus.Comment]) -> bytes:
    return sources_pb2.StreamSyncCommentsRequest(
        owner=OWNER if number == 0 else "",
        name=SOURCE if number == 0 else "",
        chunk=number,
        comments=batch,
    ).SerializeToString()


def _predictions(source_hex: str, version: int, sizes: Sizes) -> list[bytes]:
    requests = []
    for start in range(0, sizes.comments, sizes.chunk):
        stop = min(start + sizes.chunk, sizes.comments)
        requests.append(
            models_pb2.UploadPredictionsRequest(
                owner=OWNER,
                dataset=DATASET,
                version=version,
                predictions=[
                    corpus.predicted(f"{source_hex}.c{i:07d}", i) for i in range(start, stop)
                ],
            ).SerializeToString()
        )
    return requests


async def _store_rows(url: str, source_hex: str, dataset_id: int, sizes: Sizes) -> None:
    """Labellings of every comment, and a batch of improvement sessions with their
    events, through the store's models in large transactions."""
    db = database.connect(url)
    try:
        ids = await database.database.list(
            Comment.select(Comment.id)
            .join(Source)
            .where(Source.hex_id == source_hex)
            .order_by(Comment.id)
            .tuples()
        )
        now = datetime.datetime(2024, 1, 1)
        rows = [
            {
                Labelling.dataset: dataset_id,
                Labelling.comment: comment_id,
                Labelling.assigned: corpus.assigned(i),
                Labelling.dismissed: b"",
                Labelling.updated_at: now,
            }
            for i, (comment_id,) in enumerate(ids)
        ]
        for start in range(0, len(rows), _STORE_BATCH):
            async with database.atomic():
                await _insert(Labelling, rows[start : start + _STORE_BATCH])
        await _sessions(sizes, now)
    finally:
        await db.close_pool()


async def _sessions(sizes: Sizes, now: datetime.datetime) -> None:
    """`sizes.sessions` chat sessions of the bootstrap admin, `sizes.events` events each
    (prompts and responses in turn), scheduled 1..n in one open batch."""
    from corrigo.server.store.identity import User

    users = await database.database.list(User.select(User.id, User.organization).tuples())
    user_id, org_id = users[0]
    async with database.atomic():
        batch = await ImprovementBatch.acreate(
            organization=org_id,
            batch_key="benchbatch",
            status=BatchProto.OPEN,
            session_count=sizes.sessions,
            opened_at=now,
        )
        await database.database.aexecute(
            ImprovementState.insert(organization=org_id, active_batch=batch.id)
        )
        await _insert(
            PracticeSession,
            [
                {
                    "organization": org_id,
                    "user": user_id,
                    "kind": SessionProto.CHAT,
                    "title": f"session {i}",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(sizes.sessions)
            ],
        )
        session_ids = [
            row[0]
            for row in await database.database.list(
                PracticeSession.select(PracticeSession.id).order_by(PracticeSession.id).tuples()
            )
        ]
        first = session_ids[0]
        await _insert(
            PracticeSetting,
            [
                {
                    "session": sid,
                    "style_preset": "accurate",
                    "generation_params": {"temperature": 0.2},
                    "created_at": now,
                    "updated_at": now,
                }
                for sid in session_ids
            ],
        )
        events = [
            {
                "session": sid,
                "type": EventProto.PROMPT if n % 2 == 0 else EventProto.RESPONSE,
                "text": corpus.LABELS[n % 5] + " " + "please help with my order " * 4,
                "created_at": now,
            }
            for sid in session_ids
            for n in range(sizes.events)
        ]
        await _insert(PracticeEvent, events)
        await _insert(
            ImprovementEntry,
            [{"batch": batch.id, "session": sid, "number": sid - first + 1} for sid in session_ids],
        )


async def _insert(model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` in statements of `_STATEMENT_ROWS` (inside the caller's transaction)."""
    for start in range(0, len(rows), _STATEMENT_ROWS):
        await database.database.aexecute(model.insert_many(rows[start : start + _STATEMENT_ROWS]))


def start(url: str, sizes: Sizes, workdir: Path) -> Prepared:
    """Fresh database, bootstrap, server process, and the data; the server is serving."""
    timings: dict[str, float] = {}
    fresh_database(url)
    token = bootstrap(url, "bench", "admin@bench.example")
    server = ServerProcess(url, workdir / "server.log", grace=2)
    try:
        server.wait_serving()
        return _load(url, sizes, server, token, timings)
    except BaseException:
        server.stop()
        raise


def _load(
    url: str, sizes: Sizes, server: ServerProcess, token: str, timings: dict[str, float]
) -> Prepared:
    began = time.perf_counter()
    chunks = list(_chunks(sizes))
    timings["build_comments_s"] = time.perf_counter() - began
    with Client(server.target, token) as client:
        client.admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name=OWNER))
        )
        source = client.sources.CreateSource(
            sources_pb2.CreateSourceRequest(owner=OWNER, name=SOURCE, source=sources_pb2.Source())
        ).source
        dataset = client.datasets.CreateDataset(
            datasets_pb2.CreateDatasetRequest(
                owner=OWNER, name=DATASET, dataset=datasets_pb2.Dataset(source_ids=[source.id])
            )
        ).dataset
        client.datasets.CreateLabelDefs(
            datasets_pb2.CreateLabelDefsRequest(
                owner=OWNER,
                name=DATASET,
                label_defs=[datasets_pb2.LabelDef(name=n) for n in corpus.LABELS],
            )
        )
        metadata = (("authorization", f"Bearer {token}"),)
        with grpc.insecure_channel(server.target, options=raw.OPTIONS) as channel:
            began = time.perf_counter()
            acknowledged = raw.stream_sync(channel, chunks, metadata)
            sync_seconds = time.perf_counter() - began
            assert acknowledged == len(chunks), (acknowledged, len(chunks))
            model = client.models.CreateModel(
                models_pb2.CreateModelRequest(
                    owner=OWNER,
                    dataset=DATASET,
                    model=models_pb2.Model(display_name="bench", type=models_pb2.Model.LABEL),
                )
            )
            version = client.models.CreateModelVersion(
                models_pb2.CreateModelVersionRequest(
                    owner=OWNER, dataset=DATASET, model_id=model.id, validation_score=0.9
                )
            )
            began = time.perf_counter()
            for request in _predictions(source.id, version.version, sizes):
                raw.unary(channel, raw.UPLOAD_PREDICTIONS, request, metadata)
            timings["upload_predictions_s"] = time.perf_counter() - began
    timings["stream_sync_s"] = sync_seconds
    dataset_id = _dataset_id(url, dataset.id)
    began = time.perf_counter()
    asyncio.run(_store_rows(url, source.id, dataset_id, sizes))
    timings["store_rows_s"] = time.perf_counter() - began
    return Prepared(server, token, timings, sizes.comments / sync_seconds)


def _dataset_id(url: str, hex_id: str) -> int:
    from corrigo.server.store.datasets import Dataset

    async def find() -> int:
        db = database.connect(url)
        try:
            row = await Dataset.aget(Dataset.hex_id == hex_id)
            return int(row.id)
        finally:
            await db.close_pool()

    return asyncio.run(find())
