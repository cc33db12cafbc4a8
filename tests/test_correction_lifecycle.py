"""Correction sessions under concurrency and failure: sessions created at once never
share a document (also through two server processes on PostgreSQL), a session left
mid-work by a dead server is taken over, background work ends on shutdown; and the
score projection."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.errors import DeadlineExceeded
from corrigo.server.domain import correction_work, predicted_score
from corrigo.server.ops import background
from corrigo.server.store import correction, correction_sampling
from corrigo.server.store.correction import CorrectionSession, NewSession
from corrigo.server.store.database import database
from corrigo.v1 import correction_pb2
from corrigo.v1.admin_pb2 import Member
from tests import correction_helpers as c
from tests.conftest import Org
from tests.correction_helpers import Status
from tests.processes import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def sampled(corpus: c.Corpus, session_ids: list[int]) -> dict[int, set[str]]:
    """Each prepared session's documents."""
    return {
        session_id: {d.uid for d in await c.documents(corpus, session_id, page_size=100)}
        for session_id in session_ids
    }


def assert_disjoint(documents: dict[int, set[str]]) -> None:
    seen: set[str] = set()
    for uids in documents.values():
        assert not uids & seen
        seen |= uids


async def test_sessions_created_at_once_never_share_a_document(org: Org) -> None:
    corpus = await c.corpus(org, 40)
    _, second = await org.member(corpus.project_id, Member.ANNOTATOR)
    clients = [corpus.annotator, second, corpus.annotator, second]
    sessions = await asyncio.gather(
        *(
            client.corrections.CreateCorrectionSession(corpus.create_request(sample_size=10))
            for client in clients
        )
    )
    ready = [await c.prepared(corpus, s) for s in sessions]
    assert [s.status for s in ready] == [Status.ANNOTATING] * 4
    documents = await sampled(corpus, [s.id for s in sessions])
    assert [len(uids) for uids in documents.values()] == [10, 10, 10, 10]
    assert_disjoint(documents)
    assert set().union(*documents.values()) == set(corpus.uids)
    # Finishing one releases nothing new (its documents are annotated now); deleting
    # another frees its documents for the next session.
    first, rest = sessions[0], sessions[1:]
    for uid in documents[first.id]:
        await c.correct(corpus, first.id, uid, "Comfort")
    await corpus.annotator.corrections.DeleteCorrectionSession(
        correction_pb2.DeleteCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=rest[0].id
        )
    )
    await c.gone(corpus, rest[0].id)
    again = await corpus.create()
    await c.prepared(corpus, again)
    assert (await sampled(corpus, [again.id]))[again.id] == documents[rest[0].id]


async def test_sessions_created_at_once_beyond_the_supply(org: Org) -> None:
    corpus = await c.corpus(org, 10)

    async def create() -> correction_pb2.CorrectionSession | CorrigoError:
        try:
            return await corpus.create(sample_size=5)
        except CorrigoError as error:
            return error

    outcomes = await asyncio.gather(*(create() for _ in range(4)))
    created = [o for o in outcomes if isinstance(o, correction_pb2.CorrectionSession)]
    for refused in (o for o in outcomes if isinstance(o, CorrigoError)):
        assert refused.code == grpc.StatusCode.ABORTED
        assert refused.reason == "DOCUMENTS_IN_OPEN_SESSIONS"
    ready = [await c.prepared(corpus, s) for s in created]
    annotating = [s.id for s in ready if s.status == Status.ANNOTATING]
    for failed in (s for s in ready if s.status != Status.ANNOTATING):
        assert failed.status == Status.FAILED
        assert failed.failure_reason == correction_sampling.NONE_FREE
        assert failed.document_count == 0
    documents = await sampled(corpus, annotating)
    assert_disjoint(documents)
    assert sorted(len(uids) for uids in documents.values()) == [5, 5]


async def test_two_server_processes_never_hand_out_a_document_twice(
    org: Org, tmp_path: Path
) -> None:
    org.require_shared_database()
    corpus = await c.corpus(org, 60)
    servers = [
        ServerProcess(org.running.db_url, tmp_path / f"serve-{i}.log", grace=2) for i in range(2)
    ]
    try:
        for server in servers:
            await asyncio.to_thread(server.wait_serving)
        clients = [AsyncClient(server.target, org.admin_token) for server in servers]
        org.clients.extend(clients)
        sessions = await asyncio.gather(
            *(
                clients[i % 2].corrections.CreateCorrectionSession(
                    corpus.create_request(sample_size=10)
                )
                for i in range(6)
            )
        )
        ready = [await c.prepared(corpus, s) for s in sessions]
        assert [s.status for s in ready] == [Status.ANNOTATING] * 6
        documents = await sampled(corpus, [s.id for s in sessions])
        assert_disjoint(documents)
        assert set().union(*documents.values()) == set(corpus.uids)
    finally:
        codes = [await asyncio.to_thread(server.stop) for server in servers]
    assert codes == [0, 0]


async def _stalled(corpus: c.Corpus, owner: str, *, stage: int) -> int:
    """A session of `corpus` that a server (`owner`) left at `stage`, as a crash leaves
    it: the work of the stages before done, none of the next one."""
    model = await correction.find_model(corpus.project_id, corpus.model_id)
    assert model is not None
    row = await correction.create(
        NewSession(
            organization_id=corpus.org_id,
            project_id=corpus.project_id,
            user_id=corpus.annotator_id,
            model=model,
            document_group_id=None,
            strategy=correction_pb2.CreateCorrectionSessionRequest.RANDOM,
            sample_size=2,
            name=f"left at {Status.Name(stage)}",  # type: ignore[arg-type]
            description="",
            planned=2,
        ),
        None,
        owner,
    )
    if stage in (Status.SAMPLING, Status.PREDICTING):
        await correction.advance(row.id, Status.CREATED, Status.SAMPLING)
    if stage == Status.PREDICTING:
        await correction_sampling.sample(row.id)
    if stage == Status.DELETING:
        await correction.mark_deleting(corpus.project_id, row.id)
    assert await correction.status_of(row.id) == stage
    return row.id


async def test_a_session_left_mid_work_by_a_dead_server_is_taken_over(org: Org) -> None:
    corpus = await c.corpus(org, 8)
    stages = (Status.CREATED, Status.SAMPLING, Status.PREDICTING, Status.DELETING)
    left = {stage: await _stalled(corpus, "dead-server", stage=stage) for stage in stages}
    alive = await _stalled(corpus, "live-server", stage=Status.CREATED)
    # The dead server's leases run out; the live one's does not.
    expired = datetime.datetime(2000, 1, 1)
    await database.aexecute(
        CorrectionSession.update(lease_until=expired).where(
            CorrectionSession.id.in_(list(left.values()))
        )
    )
    taken = await correction_work.sweep()
    assert alive not in taken and set(taken) <= set(left.values())
    for stage in (Status.CREATED, Status.SAMPLING, Status.PREDICTING):
        changes = await c.watch(corpus.annotator, corpus.project_id, left[stage])
        assert changes[-1].session.status == Status.ANNOTATING, Status.Name(stage)  # type: ignore[arg-type]
        assert changes[-1].session.document_count == 2
        # Each step happened once: the log shows each status once.
        history = [ch.session.status for ch in changes]
        assert history == [
            Status.CREATED,
            Status.SAMPLING,
            Status.PREDICTING,
            Status.ANNOTATING,
        ]
    await c.gone(corpus, left[Status.DELETING])
    assert await correction.status_of(left[Status.DELETING]) is None
    assert await correction.status_of(alive) == Status.CREATED
    # Once its lease runs out too, it is taken over.
    await database.aexecute(
        CorrectionSession.update(lease_until=expired).where(CorrectionSession.id == alive)
    )
    assert alive in await correction_work.sweep()
    changes = await c.watch(corpus.annotator, corpus.project_id, alive)
    assert changes[-1].session.status == Status.ANNOTATING
    every = await sampled(corpus, [*(left[s] for s in stages[:3]), alive])
    assert_disjoint(every)
    assert set().union(*every.values()) == set(corpus.uids)


async def test_a_step_that_meets_a_slow_database_is_tried_again_by_a_later_sweep(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = await c.corpus(org, 6)
    what, sample = correction_work._STEPS[Status.SAMPLING]
    met: list[int] = []

    async def slow_once(session_id: int) -> None:
        if not met:
            met.append(session_id)
            raise DeadlineExceeded("a statement ran longer than the server's limit")
        await sample(session_id)

    monkeypatch.setitem(correction_work._STEPS, Status.SAMPLING, (what, slow_once))
    session = await corpus.annotator.corrections.CreateCorrectionSession(
        corpus.create_request(sample_size=2)
    )
    # Deferred, not FAILED: still SAMPLING, and no server holds it.
    for _ in range(100):
        row = await correction.find(session.id)
        if met and row is not None and row.lease_owner is None:
            break
        await asyncio.sleep(0.02)
    assert met == [session.id]
    assert await correction.status_of(session.id) == Status.SAMPLING
    assert session.id in await correction_work.sweep()
    ready = await c.prepared(corpus, session)
    assert (ready.status, ready.document_count) == (Status.ANNOTATING, 2)


async def test_background_close_lets_steps_end_then_cancels() -> None:
    work = background.Background()
    steps: list[str] = []

    async def polite() -> None:
        while not work.stopping:
            steps.append("step")
            await asyncio.sleep(0.01)
        steps.append("stopped between steps")

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            steps.append("cancelled")

    assert work.spawn(polite(), "polite") and work.spawn(stubborn(), "stubborn")
    assert work.running == 2
    await asyncio.sleep(0.03)
    await work.close(0.2)
    assert work.running == 0 and work.stopping
    assert "stopped between steps" in steps and steps[-1] == "cancelled"

    async def late() -> None:
        steps.append("never")

    assert not work.spawn(late(), "late") and "never" not in steps
    assert await work.pause(10) is True


async def test_predicted_score_projection() -> None:
    project = predicted_score.project
    assert project([], 10) == 0
    assert project([(0, 0.8)], 100) == 80  # one version: nothing to extrapolate
    assert project([(10, 0.6), (10, 0.7)], 50) == 70  # no spread in size: no slope
    assert project([(0, 0.5), (4, 0.7)], 6) == 80
    assert project([(0, 0.9), (100, 0.6)], 1000) == 60  # getting worse counts as flat
    assert project([(0, 0.1), (1, 0.99)], 10**6) == 100  # clamped
    # Three versions: the least-squares slope over ln(n + 1).
    assert project([(0, 0.4), (10, 0.6), (100, 0.7)], 100) == 74
