"""Follow mode of StreamExportDataset: the snapshot, then each change live, resumable
exactly from any message's continuation."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from corrigo.client import AsyncClient
from corrigo.client.errors import CorrigoError
from corrigo.server.config import DEFAULT_CHANGE_RETENTION, DEFAULT_MAX_FOLLOWERS
from corrigo.server.domain import follow
from corrigo.server.store import changes, database
from corrigo.server.store.database import Sql, utcnow
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from tests import dataset_helpers as h
from tests.conftest import Org
from tests.follow_helpers import Follower, follow_request, world
from tests.processes import ServerProcess
from tests.test_metrics import scrape

_ASYNC = pytest.mark.asyncio(loop_scope="session")


async def _label(org: Org, owner: str, uid: str) -> None:
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=owner,
            name="ds",
            comment_uid=uid,
            assigned=[Label(name="L", sentiment="positive")],
        )
    )


@_ASYNC
async def test_follow_sends_the_snapshot_then_each_change_as_it_commits(org: Org) -> None:
    owner, src = await world(org)
    follower = Follower(org, follow_request(owner, limit=2))
    try:
        snapshot = await follower.snapshot()
        assert h.uids(snapshot) == [f"{src}.c{i}" for i in range(3)]
        assert [bool(p.continuation) for p in snapshot] == [True, True]
        assert not any(p.live for p in snapshot)

        await h.sync(org.admin, owner, "mailbox", [h.comment("c3", 3)])
        synced = await follower.live()
        assert [c.comment.uid for c in synced.comments] == [f"{src}.c3"]
        assert synced.continuation

        await _label(org, owner, f"{src}.c1")
        labelled = await follower.live()
        assert [c.comment.uid for c in labelled.comments] == [f"{src}.c1"]
        assert [label.name for label in labelled.comments[0].annotations.labels.assigned] == ["L"]
        assert labelled.comments[0].comment.has_annotations

        await org.admin.sources.DeleteComments(
            sources_pb2.DeleteCommentsRequest(owner=owner, name="mailbox", ids=["c0", "c2"])
        )
        deleted = await follower.live()
        assert list(deleted.deleted_uids) == [f"{src}.c0", f"{src}.c2"]
        assert not deleted.comments
    finally:
        follower.cancel()


@_ASYNC
async def test_a_follow_stream_resumes_exactly_after_any_message(org: Org) -> None:
    owner, src = await world(org)
    first = Follower(org, follow_request(owner, limit=1))
    try:
        page = await first.next()
        assert h.uids([page]) == [f"{src}.c0"]
    finally:
        first.cancel()
    # From inside the snapshot: its rest, then live changes, written meanwhile or later.
    await h.sync(org.admin, owner, "mailbox", [h.comment("c3", 3)])
    second = Follower(org, follow_request(owner, limit=1, continuation=page.continuation))
    try:
        rest = await second.snapshot()
        # c3 committed after the snapshot's position: it may be in the snapshot's pages
        # (read after it committed) and comes live in any case.
        assert h.uids(rest)[:2] == [f"{src}.c1", f"{src}.c2"]
        live = await second.live()
        assert [c.comment.uid for c in live.comments] == [f"{src}.c3"]
    finally:
        second.cancel()
    # From a live message: only what committed after it.
    await _label(org, owner, f"{src}.c0")
    third = Follower(org, follow_request(owner, limit=1, continuation=live.continuation))
    try:
        again = await third.live()
        assert [c.comment.uid for c in again.comments] == [f"{src}.c0"]
        await h.sync(org.admin, owner, "mailbox", [h.comment("c4", 4)])
        later = await third.live()
        assert [c.comment.uid for c in later.comments] == [f"{src}.c4"]
    finally:
        third.cancel()


@_ASYNC
async def test_a_quiet_follow_stream_sends_keepalives_that_resume_where_it_is(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, src = await world(org, comments=1)
    monkeypatch.setattr(follow, "KEEPALIVE_SECONDS", 0.2)
    follower = Follower(org, follow_request(owner))
    try:
        await follower.snapshot()
        keepalive = await follower.next()
        assert keepalive.live and not keepalive.comments and not keepalive.deleted_uids
        assert keepalive.continuation
    finally:
        follower.cancel()
    await h.sync(org.admin, owner, "mailbox", [h.comment("c9", 9)])
    resumed = Follower(org, follow_request(owner, continuation=keepalive.continuation))
    try:
        change = await resumed.live()
        assert [c.comment.uid for c in change.comments] == [f"{src}.c9"]
    finally:
        resumed.cancel()


@pytest.mark.parametrize(
    "fields",
    [
        {"comment_uids": ["0123456789abcdef.c0"]},
        {"from": "2021-01-01T00:00:00Z"},
        {"to": "2021-01-01T00:00:00Z"},
    ],
)
@_ASYNC
async def test_follow_refuses_the_filters_a_change_has_no_place_in(
    org: Org, fields: dict[str, Any]
) -> None:
    owner, _ = await world(org, comments=1)
    with pytest.raises(CorrigoError) as error:
        async for _ in org.admin.datasets.StreamExportDataset(follow_request(owner, **fields)):
            pass
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "follow" in error.value.message


@_ASYNC
async def test_follow_and_plain_continuations_do_not_mix(org: Org) -> None:
    owner, _ = await world(org)
    plain = [
        m
        async for m in org.admin.datasets.StreamExportDataset(
            datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", limit=1)
        )
    ]
    with pytest.raises(CorrigoError) as error:
        async for _ in org.admin.datasets.StreamExportDataset(
            follow_request(owner, limit=1, continuation=plain[0].continuation)
        ):
            pass
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    follower = Follower(org, follow_request(owner, limit=1))
    try:
        page = await follower.next()
    finally:
        follower.cancel()
    with pytest.raises(CorrigoError) as error:
        await org.admin.datasets.ExportDataset(
            datasets_pb2.ExportDatasetRequest(
                owner=owner, name="ds", limit=1, continuation=page.continuation
            )
        )
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


@_ASYNC
async def test_followers_beyond_the_cap_are_refused(org: Org) -> None:
    owner, _ = await world(org, comments=1)
    follow.configure(max_followers=1, retention_seconds=DEFAULT_CHANGE_RETENTION)
    first = Follower(org, follow_request(owner))
    try:
        await first.snapshot()
        with pytest.raises(CorrigoError) as error:
            async for _ in org.admin.datasets.StreamExportDataset(follow_request(owner)):
                pass
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-followers" in error.value.message
        assert error.value.reason == "TOO_MANY_FOLLOWERS"
    finally:
        first.cancel()
    # The slot is given back when a stream ends.
    for _ in range(100):
        second = Follower(org, follow_request(owner))
        try:
            await second.snapshot()
            break
        except CorrigoError as refused:
            assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.05)
        finally:
            second.cancel()
    else:
        raise AssertionError("the first stream's slot was never given back")
    follow.configure(
        max_followers=DEFAULT_MAX_FOLLOWERS, retention_seconds=DEFAULT_CHANGE_RETENTION
    )


@_ASYNC
async def test_a_follower_pinned_to_a_version_gets_its_predictions_live(org: Org) -> None:
    owner, src = await world(org)
    version = await h.model_version(org.admin, owner, "ds")
    follower = Follower(org, follow_request(owner, model_version=version.version))
    try:
        await follower.snapshot()
        await org.admin.models.UploadPredictions(
            models_pb2.UploadPredictionsRequest(
                owner=owner,
                dataset="ds",
                version=version.version,
                predictions=[
                    models_pb2.CommentPredictions(
                        uid=f"{src}.c1", labels=[PredictedLabel(name="L", probability=0.5)]
                    )
                ],
            )
        )
        predicted = await follower.live()
        assert [c.comment.uid for c in predicted.comments] == [f"{src}.c1"]
        assert [p.name for p in predicted.comments[0].predictions.labels] == ["L"]
    finally:
        follower.cancel()


@_ASYNC
async def test_commits_of_another_server_process_reach_a_follower(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org.require_shared_database()
    # Heard through the other process's notice, not found by polling.
    monkeypatch.setattr(follow, "POLL_SECONDS", 60.0)
    owner, src = await world(org)
    other = ServerProcess(org.running.db_url, tmp_path / "other.log", grace=2)
    follower = Follower(org, follow_request(owner))
    try:
        await asyncio.to_thread(other.wait_serving)
        writer = AsyncClient(other.target, org.admin_token)
        org.clients.append(writer)
        await follower.snapshot()
        await h.sync(writer, owner, "mailbox", [h.comment("elsewhere", 7)])
        change = await follower.live()
        assert [c.comment.uid for c in change.comments] == [f"{src}.elsewhere"]
    finally:
        follower.cancel()
        code = await asyncio.to_thread(other.stop)
    assert code == 0


@_ASYNC
async def test_open_follow_streams_and_their_lag_are_metrics(org: Org) -> None:
    owner, _ = await world(org, comments=1)
    follower = Follower(org, follow_request(owner))
    try:
        await follower.snapshot()
        during = await scrape(org.running)
        assert during.value("corrigo_export_followers") >= 1
        # Caught up: nothing committed waits to be sent.
        assert ("corrigo_export_follow_lag_seconds", frozenset()) in during.samples
        assert during.value("corrigo_export_follow_lag_seconds") < 5
    finally:
        follower.cancel()
    for _ in range(100):
        if (await scrape(org.running)).value("corrigo_export_followers") == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the follower was still counted after its stream ended")


@_ASYNC
async def test_a_continuation_older_than_the_retention_is_refused(org: Org) -> None:
    owner, _ = await world(org, comments=1)
    follower = Follower(org, follow_request(owner))
    try:
        await follower.snapshot()
        await h.sync(org.admin, owner, "mailbox", [h.comment("c7", 7)])
        change = await follower.live()
    finally:
        follower.cancel()
    # Kept 2 s: a position is honoured for 1 s (the margin is half of so short a retention).
    follow.configure(max_followers=DEFAULT_MAX_FOLLOWERS, retention_seconds=2.0)
    try:
        await asyncio.sleep(2.0)
        with pytest.raises(CorrigoError) as error:
            async for _ in org.admin.datasets.StreamExportDataset(
                follow_request(owner, continuation=change.continuation)
            ):
                pass
    finally:
        follow.configure(
            max_followers=DEFAULT_MAX_FOLLOWERS, retention_seconds=DEFAULT_CHANGE_RETENTION
        )
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.reason == "CHANGES_FORGOTTEN"
    assert "export the dataset again" in error.value.message


@_ASYNC
async def test_deletes_older_than_the_retention_are_forgotten(org: Org) -> None:
    owner, src = await world(org)
    await org.admin.sources.DeleteComments(
        sources_pb2.DeleteCommentsRequest(owner=owner, name="mailbox", ids=["c0", "c1"])
    )
    await _label(org, owner, f"{src}.c2")
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(owner=owner, name="ds", comment_uid=f"{src}.c2")
    )
    kept = await _removed_rows()
    assert kept[0] >= 2 and kept[1] >= 1
    assert await changes.forget_removed(utcnow() - datetime.timedelta(hours=1)) == 0
    assert await changes.forget_removed(utcnow() + datetime.timedelta(seconds=1)) == sum(kept)
    assert await _removed_rows() == (0, 0)


async def _removed_rows() -> tuple[int, int]:
    counts = []
    for table in ("comment_removed", "labelling_removed"):
        ((count,),) = await database.fetch(Sql(f"SELECT COUNT(*) FROM {table}"), ())
        counts.append(int(count))
    return counts[0], counts[1]
