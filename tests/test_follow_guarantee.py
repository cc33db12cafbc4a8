"""Follow mode's guarantee under load: four writers (syncs, labellings, predictions,
deletes) against followers that are cut off and resumed from their last continuation
again and again; the state each follower rebuilds equals a fresh export at the end.

This is the light run of `make test` (in-process server, 6 s); the heavy run (a server
process, 15 s x RELIABILITY_SCALE, each follower cut off 5 times) is
tests/reliability/test_follow.py, which drives these helpers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import datasets_pb2, models_pb2, sources_pb2
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from tests import dataset_helpers as h
from tests.conftest import Org

# Seconds the writers write in the light run, and the comment ids they use.
WRITE_SECONDS = 6.0
IDS = [f"k{i:03d}" for i in range(120)]
FOLLOWERS = 3
# Errors a writer meets when another writer deleted what it names: expected.
_RACED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)

State = dict[str, bytes]


async def writers(
    client: AsyncClient, owner: str, src: str, version: int, until: float
) -> list[int]:
    """The four writers, each until `until` (loop time); how many writes each made."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)

    async def syncs() -> int:
        made = 0
        while loop.time() < until:
            ids = rng.sample(IDS, 5)
            await h.sync(client, owner, "mailbox", [h.comment(i, 1, text=f"v{made}") for i in ids])
            made += 1
        return made

    async def tolerant(write: Awaitable[object]) -> bool:
        try:
            await write
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
                client.datasets.UpdateLabelling(
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
                client.models.UploadPredictions(
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
            await client.sources.DeleteComments(
                sources_pb2.DeleteCommentsRequest(
                    owner=owner, name="mailbox", ids=rng.sample(IDS, 2)
                )
            )
            made += 1
            await asyncio.sleep(0.05)
        return made

    return list(await asyncio.gather(syncs(), labellings(), predictions(), deletes()))


def apply(state: State, message: datasets_pb2.StreamExportDatasetResponse) -> None:
    """A message applied to a follower's state: comments by uid, deleted uids removed."""
    for result in message.comments:
        state[result.comment.uid] = result.SerializeToString()
    for uid in message.deleted_uids:
        state.pop(uid, None)


def frequent_cuts(start: float, until: float, seed: int) -> list[float]:
    """Cut-off moments (loop time) every 0.2 to 1.5 s from `start` until `until`."""
    rng = random.Random(seed)
    cuts = []
    at = start + rng.uniform(0.2, 1.5)
    while at < until:
        cuts.append(at)
        at += rng.uniform(0.2, 1.5)
    return cuts


async def follow(
    client: AsyncClient, owner: str, until: float, cuts: list[float], seed: int
) -> tuple[State, str, int]:
    """Follow until `until`, cut off at each moment of `cuts` (loop time) and resumed
    from the last continuation each time; the state rebuilt, the last continuation, and
    how many times it was resumed."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    state: State = {}
    continuation = ""
    resumes = 0
    pending = sorted(cuts)
    while loop.time() < until:
        call = client.datasets.StreamExportDataset(
            datasets_pb2.StreamExportDatasetRequest(
                owner=owner, name="ds", follow=True, limit=rng.choice([1, 7, 64]),
                continuation=continuation,
            )
        )  # fmt: skip
        cut_at = min(pending[0] if pending else until, until)
        try:
            async with asyncio.timeout_at(cut_at):
                async for message in call:
                    # Every message carries the position to resume after it.
                    assert message.continuation
                    apply(state, message)
                    continuation = message.continuation
        except TimeoutError:
            pass
        finally:
            call.cancel()
        if pending and loop.time() >= pending[0]:
            pending.pop(0)
            resumes += loop.time() < until
    return state, continuation, resumes


async def truth(client: AsyncClient, owner: str) -> State:
    """A fresh plain export, as a follower's state."""
    state: State = {}
    async for page in client.datasets.StreamExportDataset(
        datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds")
    ):
        apply(state, page)
    return state


async def caught_up(
    client: AsyncClient, owner: str, state: State, continuation: str, truth: State
) -> State:
    """The follower resumed once more, read until its state is the truth (30 s at most)."""
    if state == truth:
        return state
    call = client.datasets.StreamExportDataset(
        datasets_pb2.StreamExportDatasetRequest(
            owner=owner, name="ds", follow=True, continuation=continuation
        )
    )
    try:
        async with asyncio.timeout(30):
            async for message in call:
                apply(state, message)
                if state == truth:
                    break
    except TimeoutError:
        pass
    finally:
        call.cancel()
    return state


async def prepared(client: AsyncClient, owner: str) -> tuple[str, int]:
    """Dataset `ds` over source `mailbox` holding IDS[:60] and the label L, and a model
    version of it: the source's hex id and the version."""
    src = await h.source(client, owner)
    await h.dataset(client, owner, [src.id])
    await client.datasets.CreateLabelDefs(h.label_defs(owner, ["L"]))
    await h.sync(client, owner, "mailbox", [h.comment(i, 0) for i in IDS[:60]])
    version = await h.model_version(client, owner, "ds")
    return src.id, version.version


async def run(
    client: AsyncClient, owner: str, seconds: float, cuts: int | None
) -> tuple[list[int], State, list[int]]:
    """Writers for `seconds` against FOLLOWERS followers, each cut off `cuts` times at
    random moments (None: every 0.2 to 1.5 s); what each writer wrote, the truth, and how
    many times each follower was resumed. Asserts each rebuilt state equals the truth."""
    src, version = await prepared(client, owner)
    loop = asyncio.get_running_loop()
    start = loop.time()
    until = start + seconds
    schedules = [
        frequent_cuts(start, until, seed)
        if cuts is None
        else sorted(random.Random(seed).uniform(start + 0.5, until - 0.5) for _ in range(cuts))
        for seed in range(FOLLOWERS)
    ]
    writing = asyncio.ensure_future(writers(client, owner, src, version, until))
    followed = await asyncio.gather(
        *(follow(client, owner, until, schedules[seed], seed) for seed in range(FOLLOWERS))
    )
    written = await writing
    assert all(count > 0 for count in written), written
    expected = await truth(client, owner)
    assert expected, "the writers left no comment"
    for state, continuation, _ in followed:
        rebuilt = await caught_up(client, owner, state, continuation, expected)
        assert sorted(rebuilt) == sorted(expected)
        assert rebuilt == expected
    return written, expected, [resumes for _, _, resumes in followed]


@pytest.mark.asyncio(loop_scope="session")
async def test_followers_cut_off_and_resumed_rebuild_the_dataset_exactly(org: Org) -> None:
    project = await org.project()
    _, _, resumes = await run(org.admin, project.name, WRITE_SECONDS, None)
    assert all(count >= 3 for count in resumes), resumes
