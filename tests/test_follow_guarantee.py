"""Follow mode's guarantee under load: four writers (syncs, labellings, predictions,
deletes) against followers that are cut off and resumed from their last continuation
again and again; the state each follower rebuilds equals a fresh export at the end."""

from __future__ import annotations

import asyncio
import os
import random

import grpc
import pytest

from corrigo.client import CorrigoError
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Seconds the writers write (RELIABILITY_SCALE makes it longer), and the comment ids they use.
WRITE_SECONDS = 6.0 * float(os.environ.get("RELIABILITY_SCALE", "1"))
IDS = [f"k{i:03d}" for i in range(120)]
FOLLOWERS = 3
# Errors a writer meets when another writer deleted what it names: expected.
_RACED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)

State = dict[str, bytes]


async def _writers(org: Org, owner: str, src: str, version: int, until: float) -> list[int]:
    """The four writers, each until `until` (loop time); how many writes each made."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)

    async def syncs() -> int:
        made = 0
        while loop.time() < until:
            ids = rng.sample(IDS, 5)
            await h.sync(
                org.admin, owner, "mailbox", [h.comment(i, 1, text=f"v{made}") for i in ids]
            )
            made += 1
        return made

    async def tolerant(write: object) -> bool:
        try:
            await write  # type: ignore[misc]
        except CorrigoError as error:
            if error.code not in _RACED:
                raise
            return False
        return True

    async def labellings() -> int:
        made = 0
        while loop.time() < until:
            uid = f"{src}.{rng.choice(IDS)}"
            assigned = [Label(name="L", sentiment="positive")] if rng.random() < 0.7 else []
            made += await tolerant(
                org.admin.datasets.UpdateLabelling(
                    datasets_pb2.UpdateLabellingRequest(
                        owner=owner, name="ds", comment_uid=uid, assigned=assigned
                    )
                )
            )
        return made

    async def predictions() -> int:
        made = 0
        while loop.time() < until:
            uid = f"{src}.{rng.choice(IDS)}"
            label = PredictedLabel(name="L", probability=round(rng.random(), 3))
            made += await tolerant(
                org.admin.models.UploadPredictions(
                    models_pb2.UploadPredictionsRequest(
                        owner=owner,
                        dataset="ds",
                        version=version,
                        predictions=[models_pb2.CommentPredictions(uid=uid, labels=[label])],
                    )
                )
            )
        return made

    async def deletes() -> int:
        made = 0
        while loop.time() < until:
            await org.admin.sources.DeleteComments(
                sources_pb2.DeleteCommentsRequest(
                    owner=owner, name="mailbox", ids=rng.sample(IDS, 2)
                )
            )
            made += 1
            await asyncio.sleep(0.05)
        return made

    return list(await asyncio.gather(syncs(), labellings(), predictions(), deletes()))


def _apply(state: State, message: datasets_pb2.StreamExportDatasetResponse) -> None:
    for result in message.comments:
        state[result.comment.uid] = result.SerializeToString()
    for uid in message.deleted_uids:
        state.pop(uid, None)


async def _follow(org: Org, request: datasets_pb2.StreamExportDatasetRequest, until: float,
                  seed: int) -> tuple[State, str, int]:  # fmt: skip
    """Follow until `until`, cut off after a random moment and resumed from the last
    continuation each time; the state rebuilt, the last continuation, and the resumes."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    state: State = {}
    continuation = ""
    resumes = 0
    while loop.time() < until:
        call = org.admin.datasets.StreamExportDataset(
            datasets_pb2.StreamExportDatasetRequest(
                owner=request.owner, name=request.name, follow=True, limit=rng.choice([1, 7, 64]),
                continuation=continuation,
            )
        )  # fmt: skip
        cut_at = loop.time() + rng.uniform(0.2, 1.5)
        try:
            async with asyncio.timeout_at(cut_at):
                async for message in call:
                    _apply(state, message)
                    continuation = message.continuation
        except TimeoutError:
            pass
        finally:
            call.cancel()
        resumes += 1
    return state, continuation, resumes


async def _truth(org: Org, owner: str) -> State:
    state: State = {}
    async for page in org.admin.datasets.StreamExportDataset(
        datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds")
    ):
        _apply(state, page)
    return state


async def _caught_up(org: Org, owner: str, state: State, continuation: str, truth: State) -> State:
    """The follower resumed once more, read until its state is the truth (30 s at most)."""
    if state == truth:
        return state
    call = org.admin.datasets.StreamExportDataset(
        datasets_pb2.StreamExportDatasetRequest(
            owner=owner, name="ds", follow=True, continuation=continuation
        )
    )
    try:
        async with asyncio.timeout(30):
            async for message in call:
                _apply(state, message)
                if state == truth:
                    break
    except TimeoutError:
        pass
    finally:
        call.cancel()
    return state


async def test_followers_cut_off_and_resumed_rebuild_the_dataset_exactly(org: Org) -> None:
    project = await org.project()
    owner = project.name
    src = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [src.id])
    await org.admin.datasets.CreateLabelDefs(h.label_defs(owner, ["L"]))
    await h.sync(org.admin, owner, "mailbox", [h.comment(i, 0) for i in IDS[:60]])
    version = await h.model_version(org.admin, owner, "ds")

    until = asyncio.get_running_loop().time() + WRITE_SECONDS
    request = datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds")
    written, *followed = await asyncio.gather(
        _writers(org, owner, src.id, version.version, until),
        *(_follow(org, request, until, seed) for seed in range(FOLLOWERS)),
    )
    assert all(count > 0 for count in written), written
    truth = await _truth(org, owner)
    assert truth, "the writers left no comment"
    for state, continuation, resumes in followed:
        assert resumes >= 3
        rebuilt = await _caught_up(org, owner, state, continuation, truth)
        assert sorted(rebuilt) == sorted(truth)
        assert rebuilt == truth
