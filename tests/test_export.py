"""The dataset export, unary and streamed, through the real server."""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from corrigo.client import CorrigoError
from corrigo.server.store import connections, database, sqlite
from corrigo.server.store import export_pages as export_store
from corrigo.v1 import datasets_pb2, models_pb2
from corrigo.v1.comments_pb2 import Comment, Label, PredictedLabel
from tests import dataset_helpers as h
from tests.conftest import Org
from tests.rest import documents

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The document's example PUT body (its export answer is documents.EXPORT_ANSWER).
DOCUMENT_PUT = {
    "dataset": {
        "description": "An optional long form description.",
        "model_family": "english",
        "source_ids": ["18ba5ce699f8da1f"],
        "title": "An Example Dataset",
    }
}


def _document_comment() -> Comment:
    synced = dict(documents.EXPORT_ANSWER["comments"][0]["comment"])
    for server_field in ("context", "created_at", "has_annotations", "last_modified"):
        synced.pop(server_field)
    for output_only in ("source_id", "uid"):
        synced.pop(output_only)
    return json_format.ParseDict(synced, Comment())


def _instant(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


async def test_document_example_end_to_end(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner, "emails")
    body = json.loads(json.dumps(DOCUMENT_PUT))
    body["dataset"]["source_ids"] = [src.id]
    request = json_format.ParseDict(
        {"owner": owner, "name": "example", **body}, datasets_pb2.CreateDatasetRequest()
    )
    created = await org.admin.datasets.CreateDataset(request)
    made = h.as_json(created)
    assert made["status"] == "ok"
    assert made["dataset"]["has_sentiment"] is True
    assert {k: made["dataset"][k] for k in ("description", "model_family", "title", "name")} == {
        "description": "An optional long form description.",
        "model_family": "english",
        "title": "An Example Dataset",
        "name": "example",
    }
    assert made["dataset"]["source_ids"] == [src.id] and made["dataset"]["owner"] == owner
    assert re.fullmatch(r"[0-9a-f]{16}", made["dataset"]["id"])

    document = _document_comment()
    later = h.comment("later", 0)
    later.timestamp.FromJsonString("2012-01-01T00:00:00Z")
    synced = await h.sync(org.admin, owner, "emails", [document, later])
    assert (synced.new, synced.updated, synced.unchanged) == (2, 0, 0)
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner,
            name="example",
            label_defs=[datasets_pb2.LabelDef(name="Parent Label > Child Label")],
        )
    )
    uid = f"{src.id}.0123456789abcdef"
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="example",
            comment_uid=uid,
            assigned=[
                Label(name="Parent Label", sentiment="positive"),
                Label(name="Parent Label > Child Label", sentiment="positive"),
            ],
        )
    )
    version = await h.model_version(org.admin, owner, "example")
    predicted = documents.EXPORT_ANSWER["comments"][0]["predictions"]["labels"]
    await org.admin.models.UploadPredictions(
        models_pb2.UploadPredictionsRequest(
            owner=owner,
            dataset="example",
            version=version.version,
            predictions=[
                models_pb2.CommentPredictions(
                    uid=uid, labels=[json_format.ParseDict(p, PredictedLabel()) for p in predicted]
                )
            ],
        )
    )

    answer = await org.admin.datasets.ExportDataset(
        json_format.ParseDict(
            {"owner": owner, "name": "example", "limit": 1}, datasets_pb2.ExportDatasetRequest()
        )
    )
    got = json.loads(json_format.MessageToJson(answer, preserving_proto_field_name=True))
    expected = json.loads(json.dumps(documents.EXPORT_ANSWER))
    # Not ours to choose: the source's id (and so the uid), when the comment was synced
    # (created_at, last_modified, and context, last_modified in milliseconds), and the
    # continuation's opaque text. Everything else must match exactly.
    comment, want = got["comments"][0]["comment"], expected["comments"][0]["comment"]
    assert comment.pop("source_id") == src.id and want.pop("source_id")
    assert comment.pop("uid") == uid and want.pop("uid")
    created_at, modified = (
        _instant(comment.pop("created_at")),
        _instant(comment.pop("last_modified")),
    )
    want.pop("created_at"), want.pop("last_modified")
    assert created_at == modified
    assert comment.pop("context") == str(int(modified.timestamp() * 1000)) and want.pop("context")
    assert got.pop("continuation") and expected.pop("continuation")
    assert got == expected

    rest = await org.admin.datasets.ExportDataset(
        datasets_pb2.ExportDatasetRequest(
            owner=owner, name="example", limit=1, continuation=answer.continuation
        )
    )
    assert [c.comment.id for c in rest.comments] == ["later"]
    assert rest.continuation == ""
    assert "continuation" not in h.as_json(rest)
    assert not rest.comments[0].comment.has_annotations
    assert list(rest.comments[0].predictions.labels) == []


class Corpus:
    """A dataset over two sources: `n` comments alternating between them, timestamps
    shuffled with ties, synced in two calls (so created_at has two values)."""

    def __init__(self, org: Org, owner: str, first: str, second: str, n: int) -> None:
        self.org, self.owner, self.first, self.second, self.n = org, owner, first, second, n
        # (timestamp seconds, sync order) per uid.
        self.keys: dict[str, tuple[int, int]] = {}

    @classmethod
    async def make(cls, org: Org, n: int = 300) -> Corpus:
        project = await org.project()
        first = await h.source(org.admin, project.name, "first")
        second = await h.source(org.admin, project.name, "second")
        await h.dataset(org.admin, project.name, [first.id, second.id])
        corpus = cls(org, project.name, first.id, second.id, n)
        batches: dict[str, list[Comment]] = {"first": [], "second": []}
        for i in range(n):
            name, hex_id = ("first", first.id) if i % 2 == 0 else ("second", second.id)
            seconds = (i * 7919) % (n // 2)  # pairs of equal timestamps
            batches[name].append(h.comment(f"c{i}", seconds))
            corpus.keys[f"{hex_id}.c{i}"] = (seconds, i)
        await h.sync(org.admin, project.name, "first", batches["first"])
        await h.sync(org.admin, project.name, "second", batches["second"])
        return corpus

    def request(self, **fields: object) -> datasets_pb2.ExportDatasetRequest:
        return datasets_pb2.ExportDatasetRequest(owner=self.owner, name="ds", **fields)  # type: ignore[arg-type]

    def by_timestamp(self) -> list[str]:
        # Ties keep insertion order: the first source's batch was synced first.
        order = {
            uid: (ts, 0 if uid.startswith(self.first) else 1, i)
            for uid, (ts, i) in self.keys.items()
        }
        return sorted(self.keys, key=order.__getitem__)

    def by_created(self) -> list[str]:
        return sorted(
            self.keys, key=lambda uid: (0 if uid.startswith(self.first) else 1, self.keys[uid][1])
        )


async def test_orderings_and_pages(org: Org) -> None:
    corpus = await Corpus.make(org)
    pages = await h.export_all(org.admin, corpus.request(limit=64))
    assert [len(p.comments) for p in pages] == [64, 64, 64, 64, 44]
    assert h.uids(pages) == corpus.by_timestamp()
    default = await h.export_all(org.admin, corpus.request())
    assert h.uids(default) == corpus.by_timestamp() and len(default[0].comments) == 64
    created = await h.export_all(org.admin, corpus.request(order_by="created_at", limit=256))
    assert h.uids(created) == corpus.by_created()
    # The page size may change between pages; the position is a keyset, not an offset.
    first = await org.admin.datasets.ExportDataset(corpus.request(limit=10))
    rest = await h.export_all(org.admin, corpus.request(limit=200, continuation=first.continuation))
    assert h.uids([first, *rest]) == corpus.by_timestamp()


async def test_merge_and_in_filter_plans_agree(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:

    corpus = await Corpus.make(org, 120)
    monkeypatch.setattr(export_store, "MERGE_SOURCES_MAX", 1)
    for order in ("timestamp", "created_at"):
        pages = await h.export_all(org.admin, corpus.request(order_by=order, limit=50))
        want = corpus.by_timestamp() if order == "timestamp" else corpus.by_created()
        assert h.uids(pages) == want


async def test_filters(org: Org) -> None:
    corpus = await Corpus.make(org, 100)
    everything = corpus.by_timestamp()
    only_second = await h.export_all(org.admin, corpus.request(source_ids=[corpus.second]))
    assert h.uids(only_second) == [u for u in everything if u.startswith(corpus.second)]

    start, end = "2020-01-01T00:00:10Z", "2020-01-01T00:00:20+00:00"
    window = await h.export_all(org.admin, corpus.request(**{"from": start, "to": end}, limit=7))
    assert h.uids(window) == [u for u in everything if 10 <= corpus.keys[u][0] <= 20]
    assert any(corpus.keys[u][0] == 20 for u in h.uids(window))  # `to` is inclusive
    naive = await h.export_all(org.admin, corpus.request(**{"from": "2020-01-01T00:00:10"}))
    assert h.uids(naive) == [u for u in everything if corpus.keys[u][0] >= 10]

    wanted = [everything[5], everything[0], f"{corpus.first}.missing"]
    picked = await h.export_all(org.admin, corpus.request(comment_uids=wanted, limit=1))
    assert h.uids(picked) == [everything[0], everything[5]]

    created = await h.export_all(org.admin, corpus.request(order_by="created_at"))
    created_at = [c.comment.created_at.ToJsonString() for p in created for c in p.comments]
    cut = created_at[-1]
    late = await h.export_all(org.admin, corpus.request(order_by="created_at", **{"from": cut}))
    assert h.uids(late) == [u for u in corpus.by_created() if u.startswith(corpus.second)]


async def test_filter_limits_and_bad_input(org: Org, other_org: Org) -> None:
    corpus = await Corpus.make(org, 10)
    foreign = await h.source(org.admin, corpus.owner, "not-in-dataset")
    uid = f"{corpus.first}.c0"
    cases: list[tuple[dict[str, object], str]] = [
        ({"limit": 257}, "limit"),
        ({"limit": -1}, "limit"),
        ({"comment_uids": [uid] * 257}, "comment_uids"),
        ({"comment_uids": ["nodot"]}, "comment_uids[0]"),
        ({"comment_uids": [uid], "source_ids": [corpus.first]}, "comment_uids"),
        ({"comment_uids": [uid], "from": "2020-01-01T00:00:00Z"}, "comment_uids"),
        ({"comment_uids": [f"{foreign.id}.c0"]}, "comment_uids[0]"),
        ({"source_ids": [corpus.first] * 1025}, "source_ids"),
        ({"source_ids": ["xyz"]}, "source_ids[0]"),
        ({"source_ids": [corpus.first, foreign.id]}, "source_ids[1]"),
        ({"order_by": "subject"}, "order_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2020-13-01"}, "to"),
        ({"model_version": -1}, "model_version"),
        ({"model_tag": "Prod!"}, "model_tag"),
        ({"model_tag": "prod", "model_version": 1}, "model_tag"),
        ({"continuation": "garbage"}, "continuation"),
    ]
    for fields, field in cases:
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.ExportDataset(corpus.request(**fields))
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, (fields, err.value.message)
        assert field in err.value.fields, (fields, err.value.fields)
    for missing in ({"model_version": 3}, {"model_tag": "prod"}):
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.ExportDataset(corpus.request(**missing))
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.ExportDataset(
            datasets_pb2.ExportDatasetRequest(owner=corpus.owner, name="nope")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    # Another organization's admin sees nothing of it: NOT_FOUND, never the data.
    with pytest.raises(CorrigoError) as err:
        await other_org.admin.datasets.ExportDataset(corpus.request())
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_export_follows_the_datasets_sources_as_they_are_now(org: Org) -> None:
    # The dataset and its sources are read with the call's access check: each call sees
    # the links as they stand, a dataset without sources exports nothing, and a missing
    # one is NOT_FOUND on both RPCs.
    corpus = await Corpus.make(org, 20)
    both = h.uids(await h.export_all(org.admin, corpus.request()))
    assert sorted(both) == sorted(corpus.keys)

    async def relink(source_ids: list[str]) -> None:
        await org.admin.datasets.UpdateDataset(
            datasets_pb2.UpdateDatasetRequest(
                owner=corpus.owner,
                name="ds",
                dataset=datasets_pb2.Dataset(source_ids=source_ids),
                update_mask=field_mask_pb2.FieldMask(paths=["source_ids"]),
            )
        )

    await relink([corpus.second])
    second_only = [uid for uid in corpus.by_timestamp() if uid.startswith(corpus.second)]
    assert h.uids(await h.export_all(org.admin, corpus.request())) == second_only
    streamed = [m async for m in org.admin.datasets.StreamExportDataset(_stream_request(corpus))]
    assert h.uids(streamed) == second_only
    with pytest.raises(CorrigoError) as err:
        await org.admin.datasets.ExportDataset(corpus.request(source_ids=[corpus.first]))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["source_ids[0]"]

    await relink([])
    empty = await org.admin.datasets.ExportDataset(corpus.request())
    assert list(empty.comments) == [] and empty.continuation == ""
    streamed = [
        m
        async for m in org.admin.datasets.StreamExportDataset(
            _stream_request(corpus, include_total=True)
        )
    ]
    assert [(list(m.comments), m.continuation, m.total) for m in streamed] == [([], "", 0)]

    with pytest.raises(CorrigoError) as err:
        await h.export_all(
            org.admin, datasets_pb2.ExportDatasetRequest(owner=corpus.owner, name="gone")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.message == f"dataset {corpus.owner}/gone not found"
    # A stream's error reaches its reader decoded as well.
    with pytest.raises(CorrigoError) as stream_err:
        _ = [
            m
            async for m in org.admin.datasets.StreamExportDataset(
                datasets_pb2.StreamExportDatasetRequest(owner=corpus.owner, name="gone")
            )
        ]
    assert stream_err.value.code == grpc.StatusCode.NOT_FOUND
    assert stream_err.value.message == f"dataset {corpus.owner}/gone not found"


async def test_tampered_and_foreign_continuations(org: Org) -> None:
    corpus = await Corpus.make(org, 20)
    page = await org.admin.datasets.ExportDataset(corpus.request(limit=5))
    token = page.continuation
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    same_dataset_other_query = [
        corpus.request(continuation=token, order_by="created_at"),
        corpus.request(continuation=token, source_ids=[corpus.first]),
        corpus.request(continuation=token, **{"to": "2030-01-01T00:00:00Z"}),
    ]
    await h.dataset(org.admin, corpus.owner, [corpus.first, corpus.second], name="twin")
    twin = datasets_pb2.ExportDatasetRequest(owner=corpus.owner, name="twin", continuation=token)
    for request in [corpus.request(continuation=tampered), *same_dataset_other_query, twin]:
        with pytest.raises(CorrigoError) as err:
            await org.admin.datasets.ExportDataset(request)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.fields == ["continuation"]
        assert err.value.reason == "PAGE_TOKEN_INVALID"
    # A continuation works for the streaming export too, and the other way round.
    stream = org.admin.datasets.StreamExportDataset(
        datasets_pb2.StreamExportDatasetRequest(owner=corpus.owner, name="ds", continuation=token)
    )
    streamed = [m async for m in stream]
    assert h.uids([page, *streamed]) == corpus.by_timestamp()


def _stream_request(corpus: Corpus, **fields: object) -> datasets_pb2.StreamExportDatasetRequest:
    return datasets_pb2.StreamExportDatasetRequest(owner=corpus.owner, name="ds", **fields)  # type: ignore[arg-type]


async def test_stream_equals_unary_pages_and_resumes(org: Org) -> None:
    corpus = await Corpus.make(org, 3000)
    unary = await h.export_all(org.admin, corpus.request(limit=256))
    messages = [
        m
        async for m in org.admin.datasets.StreamExportDataset(
            _stream_request(corpus, limit=256, include_total=True)
        )
    ]
    assert messages[0].total == 3000 and all(m.total == 0 for m in messages[1:])
    assert [list(m.comments) for m in messages] == [list(p.comments) for p in unary]
    assert [bool(m.continuation) for m in messages] == [True] * (len(messages) - 1) + [False]
    assert max(m.ByteSize() for m in messages) < 4 * 1024 * 1024

    # Cancel a stream midway, then resume from the last continuation received.
    call = org.admin.datasets.StreamExportDataset(_stream_request(corpus, limit=100))
    received: list[datasets_pb2.StreamExportDatasetResponse] = []
    async for message in call:
        received.append(message)
        if len(received) == 7:
            call.cancel()
            break
    resumed = [
        m
        async for m in org.admin.datasets.StreamExportDataset(
            _stream_request(
                corpus, limit=100, continuation=received[-1].continuation, include_total=True
            )
        )
    ]
    assert resumed[0].total == 3000 - 700
    assert h.uids(received) + h.uids(resumed) == corpus.by_timestamp()


async def test_a_streamed_page_is_not_held_once_sent(org: Org) -> None:
    corpus = await Corpus.make(org, 400)
    assert await _streamed(corpus, limit=20) == corpus.by_timestamp()
    # Every page read ahead was taken at once: none is kept for the let-go timer of a
    # stalled client (which would hold each page for AHEAD_HOLD_SECONDS after it is sent).
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, export_store._Ahead)] == []


class _Spy:
    """Counts the pages read on the event loop's thread (`LoopReads.read` with a pace);
    each answers what `answer(call number, original call)` makes of it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = sqlite.LoopReads.read

        def spied(reads: sqlite.LoopReads, sql: str, params: Any, pace: Any) -> object:
            if pace is None:  # a small read, not a page
                return original(reads, sql, params, pace)
            self.calls += 1
            return self.answer(self.calls, lambda: original(reads, sql, params, pace))

        monkeypatch.setattr(sqlite.LoopReads, "read", spied)

    def answer(self, number: int, call: Callable[[], object]) -> object:
        return call()


async def _streamed(corpus: Corpus, **fields: object) -> list[str]:
    call = corpus.org.admin.datasets.StreamExportDataset(_stream_request(corpus, **fields))
    return h.uids([m async for m in call])


async def _watched_sqlite_corpus(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> tuple[Corpus, _Spy, _PagesInThread]:
    """A corpus of 400, and spies on the pages read on the loop's thread and on those read
    in a pool connection's thread."""
    if database.is_postgres(org.running.db_url):
        pytest.skip("pages are read on the event loop's thread on SQLite only")
    corpus = await Corpus.make(org, 400)
    reads = _Spy(monkeypatch)
    return corpus, reads, _PagesInThread(monkeypatch)


class _PagesInThread:
    """Counts the export pages read on pool connections' threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = sqlite.SqliteConnection.execute

        async def execute(
            conn: sqlite.SqliteConnection, sql: str, params: Any, bound: connections.Bound
        ) -> Any:
            if sql.startswith("SELECT page.id"):
                self.calls += 1
            return await original(conn, sql, params, bound)

        monkeypatch.setattr(sqlite.SqliteConnection, "execute", execute)


async def test_sqlite_stream_reads_on_the_loop_thread(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, reads, in_thread = await _watched_sqlite_corpus(org, monkeypatch)
    assert await _streamed(corpus, limit=20) == corpus.by_timestamp()
    assert (reads.calls, in_thread.calls) == (20, 0)
    assert await _streamed(corpus, limit=256, order_by="created_at") == corpus.by_created()
    assert (reads.calls, in_thread.calls) == (22, 0)


async def test_sqlite_stream_moves_to_the_thread_when_slices_are_slow(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, reads, in_thread = await _watched_sqlite_corpus(org, monkeypatch)
    # Every slice counts as slow: a page of 20 (21 rows read) is two slices of 16, so the
    # reader is slow after the second page, and the other 18 are read in the thread.
    monkeypatch.setattr(sqlite.Pace, "SLOW_SLICE_SECONDS", -1.0)
    assert await _streamed(corpus, limit=20) == corpus.by_timestamp()
    assert (reads.calls, in_thread.calls) == (2, 18)


async def test_sqlite_stream_moves_to_the_thread_when_the_database_is_busy(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, reads, in_thread = await _watched_sqlite_corpus(org, monkeypatch)

    async def busy_from_the_third(number: int, call: Callable[[], object]) -> object:
        return None if number >= 3 else await call()

    reads.answer = busy_from_the_third
    # Two pages read on the loop; from the third on the loop finds the database busy
    # (each page tries it again) and the page is read in a thread: none twice, none
    # skipped.
    assert await _streamed(corpus, limit=30, include_total=True) == corpus.by_timestamp()
    assert (reads.calls, in_thread.calls) == (14, 12)


async def test_syncs_during_a_stream_repeat_nothing_and_skip_nothing(org: Org) -> None:
    corpus = await Corpus.make(org, 400)
    before = corpus.by_timestamp()
    call = org.admin.datasets.StreamExportDataset(_stream_request(corpus, limit=20))
    seen: list[str] = []
    moved: set[str] = set()
    async for message in call:
        seen.extend(c.comment.uid for c in message.comments)
        if len(seen) == 100:
            # New comments before and after the cursor, edits that keep the timestamp,
            # and moves of comments across the cursor both ways.
            new = [h.comment(f"new{i}", i * 3) for i in range(40)]
            done, pending = before[:100], before[100:]
            edits = [
                h.comment(uid.split(".")[1], corpus.keys[uid][0], "edited") for uid in pending[:10]
            ]
            back = [h.comment(uid.split(".")[1], 0, "moved back") for uid in pending[10:15]]
            ahead = [h.comment(uid.split(".")[1], 10_000, "moved ahead") for uid in done[:5]]
            moved = {uid for uid in pending[10:15] + done[:5]}
            batch = [*new, *edits, *back, *ahead]
            await asyncio.gather(
                h.sync(org.admin, corpus.owner, "first", batch[::2]),
                h.sync(org.admin, corpus.owner, "second", batch[1::2]),
            )
    assert len(seen) == len(set(seen)), "a comment was returned twice"
    unmoved = [uid for uid in before if uid not in moved]
    returned = set(seen)
    assert all(uid in returned for uid in unmoved), "a pre-existing comment was skipped"
    assert [uid for uid in seen if uid in set(unmoved)] == unmoved
    # created_at order never changes for a comment: every pre-existing one, once.
    seen_created: list[str] = []
    call = org.admin.datasets.StreamExportDataset(_stream_request(corpus, order_by="created_at"))
    async for message in call:
        seen_created.extend(c.comment.uid for c in message.comments)
        if len(seen_created) == 64:
            await h.sync(org.admin, corpus.owner, "first", [h.comment("c0", 99_999, "moved")])
    assert len(seen_created) == len(set(seen_created))
    assert set(before) <= set(seen_created)


async def test_model_version_and_tag_choose_predictions(org: Org) -> None:
    corpus = await Corpus.make(org, 4)
    uid = corpus.by_timestamp()[0]
    versions = [await h.model_version(org.admin, corpus.owner, "ds") for _ in range(3)]
    assert [v.version for v in versions] == [1, 2, 3]
    for v in versions[:2]:
        await org.admin.models.UploadPredictions(
            models_pb2.UploadPredictionsRequest(
                owner=corpus.owner,
                dataset="ds",
                version=v.version,
                predictions=[
                    models_pb2.CommentPredictions(
                        uid=uid, labels=[PredictedLabel(name=f"L{v.version}", probability=0.5)]
                    )
                ],
            )
        )
    await org.admin.models.SetModelTag(
        models_pb2.SetModelTagRequest(owner=corpus.owner, dataset="ds", name="prod", version=1)
    )

    async def predicted(**fields: object) -> list[str]:
        page = await org.admin.datasets.ExportDataset(corpus.request(comment_uids=[uid], **fields))
        return [label.name for label in page.comments[0].predictions.labels]

    assert await predicted() == []  # the latest version, 3, predicted nothing
    assert await predicted(model_version=2) == ["L2"]
    assert await predicted(model_tag="prod") == ["L1"]


async def test_big_comments_end_pages_early(org: Org) -> None:
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    big = []
    for i in range(24):
        made = h.comment(f"big{i}", i, "x" * 60_000)
        made.messages.extend([made.messages[0]] * 2)
        big.append(made)
    await h.sync(org.admin, project.name, "mailbox", big)
    request = datasets_pb2.ExportDatasetRequest(owner=project.name, name="ds", limit=256)
    pages = await h.export_all(org.admin, request)
    assert [c.comment.id for p in pages for c in p.comments] == [f"big{i}" for i in range(24)]
    assert len(pages) > 1 and all(p.ByteSize() < 3 * 1024 * 1024 for p in pages)
    # The stream's pages end early at the same comments (on PostgreSQL the next page is
    # read ahead from where a page ended, not from where its query stopped).
    stream = datasets_pb2.StreamExportDatasetRequest(owner=project.name, name="ds", limit=256)
    streamed = [m async for m in org.admin.datasets.StreamExportDataset(stream)]
    assert [list(m.comments) for m in streamed] == [list(p.comments) for p in pages]
    too_big = h.comment("huge", 0, "x" * 65_000)
    too_big.messages.extend([too_big.messages[0]] * 4)
    with pytest.raises(CorrigoError) as err:
        await h.sync(org.admin, project.name, "mailbox", [too_big])
    assert err.value.fields == ["comments[0]"]
