"""Follow streams whose view changes as a whole (sources linked, unlinked or deleted, the
model version shown): a reset, then the snapshot again in the new view."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from corrigo.client.errors import CorrigoError
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import PredictedLabel
from tests import dataset_helpers as h
from tests.conftest import Org
from tests.follow_helpers import Follower, follow_request, world

_ASYNC = pytest.mark.asyncio(loop_scope="session")


async def _second_source(org: Org, owner: str) -> str:
    """Source `other` (its hex id) holding comment o0."""
    other = await h.source(org.admin, owner, "other")
    await h.sync(org.admin, owner, "other", [h.comment("o0", 10)])
    return other.id


async def _set_sources(org: Org, owner: str, source_ids: list[str]) -> None:
    await org.admin.datasets.UpdateDataset(
        datasets_pb2.UpdateDatasetRequest(
            owner=owner,
            name="ds",
            dataset=datasets_pb2.Dataset(source_ids=source_ids),
            update_mask=field_mask_pb2.FieldMask(paths=["source_ids"]),
        )
    )


async def _reset(follower: Follower) -> datasets_pb2.StreamExportDatasetResponse:
    """The next message that is not a keepalive, which must be a reset."""
    while True:
        message = await follower.next()
        if message.comments or message.deleted_uids or message.reset:
            break
    assert message.reset and message.continuation
    assert not message.comments and not message.deleted_uids
    return message


async def _predict(org: Org, owner: str, version: int, uid: str, label: str) -> None:
    await org.admin.models.UploadPredictions(
        models_pb2.UploadPredictionsRequest(
            owner=owner,
            dataset="ds",
            version=version,
            predictions=[
                models_pb2.CommentPredictions(
                    uid=uid, labels=[PredictedLabel(name=label, probability=0.5)]
                )
            ],
        )
    )


@_ASYNC
async def test_a_source_linked_unlinked_or_deleted_resets_the_stream(org: Org) -> None:
    owner, src = await world(org, comments=2)
    other = await _second_source(org, owner)
    follower = Follower(org, follow_request(owner))
    try:
        assert h.uids(await follower.snapshot()) == [f"{src}.c0", f"{src}.c1"]

        await _set_sources(org, owner, [src, other])
        await _reset(follower)
        both = await follower.snapshot()
        assert sorted(h.uids(both)) == sorted([f"{src}.c0", f"{src}.c1", f"{other}.o0"])
        # The new source's changes come live.
        await h.sync(org.admin, owner, "other", [h.comment("o1", 11)])
        assert [c.comment.uid for c in (await follower.live()).comments] == [f"{other}.o1"]

        await _set_sources(org, owner, [src])
        await _reset(follower)
        assert h.uids(await follower.snapshot()) == [f"{src}.c0", f"{src}.c1"]

        await _set_sources(org, owner, [src, other])
        await _reset(follower)
        await follower.snapshot()
        await org.admin.sources.DeleteSource(
            sources_pb2.DeleteSourceRequest(owner=owner, name="other")
        )
        await _reset(follower)
        assert h.uids(await follower.snapshot()) == [f"{src}.c0", f"{src}.c1"]
    finally:
        follower.cancel()


@_ASYNC
async def test_a_dataset_update_that_changes_no_source_read_does_not_reset(org: Org) -> None:
    owner, src = await world(org, comments=1)
    other = await _second_source(org, owner)
    follower = Follower(org, follow_request(owner, source_ids=[src]))
    try:
        await follower.snapshot()
        # A source linked that the stream does not read: it reads its view again and
        # finds the same; the same sources written again, or the title, move nothing.
        await _set_sources(org, owner, [src, other])
        await _set_sources(org, owner, [other, src])
        await org.admin.datasets.UpdateDataset(
            datasets_pb2.UpdateDatasetRequest(
                owner=owner, name="ds", dataset=datasets_pb2.Dataset(title="renamed")
            )
        )
        await h.sync(org.admin, owner, "mailbox", [h.comment("c5", 5)])
        change = await follower.live()
        assert [c.comment.uid for c in change.comments] == [f"{src}.c5"]
    finally:
        follower.cancel()


@_ASYNC
async def test_a_follower_of_a_tag_resets_when_the_tag_moves(org: Org) -> None:
    owner, src = await world(org, comments=1)
    first = await h.model_version(org.admin, owner, "ds")
    await _predict(org, owner, first.version, f"{src}.c0", "L")
    tag = models_pb2.SetModelTagRequest(owner=owner, dataset="ds", name="prod")
    tag.version = first.version
    await org.admin.models.SetModelTag(tag)
    follower = Follower(org, follow_request(owner, model_tag="prod"))
    try:
        (page,) = await follower.snapshot()
        assert [p.name for p in page.comments[0].predictions.labels] == ["L"]
        second = await h.model_version(org.admin, owner, "ds")
        await _predict(org, owner, second.version, f"{src}.c0", "M")
        tag.version = second.version
        await org.admin.models.SetModelTag(tag)
        await _reset(follower)
        (page,) = await follower.snapshot()
        assert [p.name for p in page.comments[0].predictions.labels] == ["M"]
    finally:
        follower.cancel()


@_ASYNC
async def test_a_newer_version_resets_a_follower_of_the_latest_only(org: Org) -> None:
    owner, src = await world(org, comments=1)
    first = await h.model_version(org.admin, owner, "ds")
    latest = Follower(org, follow_request(owner))
    pinned = Follower(org, follow_request(owner, model_version=first.version))
    try:
        await latest.snapshot()
        await pinned.snapshot()
        second = await h.model_version(org.admin, owner, "ds")
        await _reset(latest)
        await latest.snapshot()
        # The new version's predictions reach the follower of the latest, not the pinned.
        await _predict(org, owner, second.version, f"{src}.c0", "M")
        predicted = await latest.live()
        assert [p.name for p in predicted.comments[0].predictions.labels] == ["M"]
        await h.sync(org.admin, owner, "mailbox", [h.comment("c7", 7)])
        change = await pinned.live()
        assert [c.comment.uid for c in change.comments] == [f"{src}.c7"]
    finally:
        latest.cancel()
        pinned.cancel()


@_ASYNC
async def test_a_continuation_from_before_a_view_change_resets(org: Org) -> None:
    owner, src = await world(org, comments=2)
    other = await _second_source(org, owner)
    first = Follower(org, follow_request(owner, limit=1))
    try:
        messages = [await first.next() for _ in range(3)]
    finally:
        first.cancel()
    # Two snapshot pages, then the live message that ends the snapshot.
    assert [bool(m.live) for m in messages] == [False, False, True]
    await _set_sources(org, owner, [src, other])
    for continuation in (m.continuation for m in messages):
        again = Follower(org, follow_request(owner, limit=1, continuation=continuation))
        try:
            reset = await _reset(again)
            expected = sorted([f"{src}.c0", f"{src}.c1", f"{other}.o0"])
            assert sorted(h.uids(await again.snapshot())) == expected
        finally:
            again.cancel()
    # The reset's continuation starts the new snapshot, without a second reset.
    resumed = Follower(org, follow_request(owner, limit=1, continuation=reset.continuation))
    try:
        first = await resumed.next()
        assert not first.reset and len(first.comments) == 1
        rest = await resumed.snapshot()
        assert sorted(h.uids([first, *rest])) == expected
    finally:
        resumed.cancel()


@_ASYNC
async def test_a_follower_ends_when_its_source_leaves_or_its_dataset_goes(org: Org) -> None:
    owner, src = await world(org, comments=1)
    other = await _second_source(org, owner)
    await _set_sources(org, owner, [src, other])
    narrow = Follower(org, follow_request(owner, source_ids=[other]))
    whole = Follower(org, follow_request(owner))
    try:
        assert h.uids(await narrow.snapshot()) == [f"{other}.o0"]
        await whole.snapshot()
        await _set_sources(org, owner, [src])
        with pytest.raises(CorrigoError) as left:
            await _reset(narrow)
        assert left.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert left.value.fields == ["source_ids[0]"]
        await _reset(whole)
        await whole.snapshot()
        await org.admin.datasets.DeleteDataset(
            datasets_pb2.DeleteDatasetRequest(owner=owner, name="ds")
        )
        with pytest.raises(CorrigoError) as gone:
            await _reset(whole)
        assert gone.value.code == grpc.StatusCode.NOT_FOUND
    finally:
        narrow.cancel()
        whole.cancel()
