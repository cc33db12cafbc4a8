"""Improvement batches through the real server on SQLite and PostgreSQL, and two server
processes sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.permissions import RULES
from corrigo.v1 import admin_pb2, improvement_pb2, practice_pb2
from corrigo.v1.admin_pb2 import Member, User
from corrigo.v1.improvement_pb2 import ImprovementBatch
from corrigo.v1.practice_pb2 import PracticeEvent, PracticeSession
from tests.conftest import Org
from tests.processes import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")

Placed = improvement_pb2.UseSessionForImprovementResponse


async def chat(
    client: AsyncClient,
    *,
    events: tuple[int, ...] = (PracticeEvent.PROMPT, PracticeEvent.RESPONSE),
    kind: int = PracticeSession.CHAT,
    project_id: int | None = None,
) -> int:
    """A session whose log holds `events` (by default a prompt and its answer)."""
    request = practice_pb2.CreatePracticeSessionRequest(kind=kind)  # type: ignore[arg-type]
    if project_id is not None:
        request.project_id.value = project_id
    session = await client.practice.CreatePracticeSession(request)
    if events:
        await client.practice.AppendEvents(
            practice_pb2.AppendEventsRequest(
                session_id=session.session_id,
                events=[
                    PracticeEvent(
                        type=t,  # type: ignore[arg-type]
                        text=f"text {i}",
                        rating=3 if t == PracticeEvent.RATING else 0,
                    )
                    for i, t in enumerate(events)
                ],
            )
        )
    return session.session_id


async def use(client: AsyncClient, session_id: int) -> Placed:
    return await client.improvement.UseSessionForImprovement(
        improvement_pb2.UseSessionForImprovementRequest(session_id=session_id)
    )


async def page(client: AsyncClient, **fields: object) -> improvement_pb2.GetBatchSessionsResponse:
    return await client.improvement.GetBatchSessions(
        improvement_pb2.GetBatchSessionsRequest(**fields)  # type: ignore[arg-type]
    )


async def test_every_improvement_rpc_has_a_permission_rule() -> None:
    service = improvement_pb2.DESCRIPTOR.services_by_name["ImprovementService"]
    for method in service.methods:
        assert f"/{service.full_name}/{method.name}" in RULES


async def test_missing_or_invisible_session_is_not_found(org: Org) -> None:
    _, owner = await org.user()
    _, other = await org.user()
    session_id = await chat(owner)
    for client, sid in [(owner, 999_999), (other, session_id)]:
        with pytest.raises(CorrigoError) as err:
            await use(client, sid)
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        assert err.value.reason == "RESOURCE_NOT_FOUND"
    for bad in (0, -1):
        with pytest.raises(CorrigoError) as err:
            await use(owner, bad)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.fields == ["session_id"]


async def _codes(client: AsyncClient, session_id: int) -> tuple[str, str]:
    """What PracticeSessionService and ImprovementService answer `client` for the
    session: a status code's name each (OK when the call succeeds)."""
    codes = []
    for call in (
        client.practice.GetPracticeSession(
            practice_pb2.GetPracticeSessionRequest(session_id=session_id)
        ),
        use(client, session_id),
    ):
        try:
            await call
            codes.append("OK")
        except CorrigoError as err:
            codes.append(err.code.name)
    return codes[0], codes[1]


async def test_one_rule_for_who_may_act_on_a_session(org: Org) -> None:
    """Both services answer every caller alike: the owner while they hold `practice` in
    the session's project; nobody else, admins included."""
    project = await org.project()
    owner_id, owner = await org.member(project.id, Member.ANNOTATOR)
    _, project_admin = await org.member(project.id, Member.ADMIN)
    _, colleague = await org.member(project.id, Member.EDITOR)
    session_id = await chat(owner, project_id=project.id)
    personal = await chat(owner)
    for stranger in (project_admin, colleague, org.admin):
        assert await _codes(stranger, session_id) == ("NOT_FOUND", "NOT_FOUND")
        assert await _codes(stranger, personal) == ("NOT_FOUND", "NOT_FOUND")

    # Demoted to VIEWER, then removed: refused by both, for the session of the project.
    for demote in (True, False):
        if demote:
            await org.admin.admin.SetMember(
                admin_pb2.SetMemberRequest(
                    project_id=project.id, user_id=owner_id, role=Member.VIEWER
                )
            )
        else:
            await org.admin.admin.RemoveMember(
                admin_pb2.RemoveMemberRequest(project_id=project.id, user_id=owner_id)
            )
        fresh = await chat(org.admin, project_id=project.id)
        assert await _codes(owner, session_id) == ("PERMISSION_DENIED", "PERMISSION_DENIED")
        assert await _codes(owner, fresh) == ("NOT_FOUND", "NOT_FOUND")
    # Their session without a project stays theirs.
    assert await _codes(owner, personal) == ("OK", "OK")
    # Back in the project, the session is theirs to act on again.
    await org.admin.admin.SetMember(
        admin_pb2.SetMemberRequest(project_id=project.id, user_id=owner_id, role=Member.ANNOTATOR)
    )
    assert await _codes(owner, session_id) == ("OK", "OK")


@pytest.mark.parametrize(
    "events",
    [
        (),
        (PracticeEvent.PROMPT,),
        (PracticeEvent.RESPONSE, PracticeEvent.PROMPT),
        (PracticeEvent.PROMPT, PracticeEvent.RATING, PracticeEvent.NOTE),
    ],
)
async def test_session_without_a_prompt_and_its_response_is_failed_precondition(
    org: Org, events: tuple[int, ...]
) -> None:
    session_id = await chat(org.admin, events=events)
    with pytest.raises(CorrigoError) as err:
        await use(org.admin, session_id)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "SESSION_EVENTS_MISSING"


async def test_payload_search_session_is_skipped(org: Org) -> None:
    session_id = await chat(org.admin, kind=PracticeSession.PAYLOAD_SEARCH)
    answer = await use(org.admin, session_id)
    assert answer.skipped and "payload-search" in answer.skip_reason
    assert (answer.batch_id, answer.number) == ("", 0)
    with pytest.raises(CorrigoError) as err:
        await org.admin.improvement.GetBatch(improvement_pb2.GetBatchRequest())
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.reason == "NO_ACTIVE_BATCH"


async def test_scheduling_numbers_sessions_and_is_idempotent(org: Org) -> None:
    ids = [await chat(org.admin) for _ in range(3)]
    placed = [await use(org.admin, sid) for sid in ids]
    assert [p.number for p in placed] == [1, 2, 3]
    assert len({p.batch_id for p in placed}) == 1 and placed[0].batch_id
    again = await use(org.admin, ids[1])
    assert again == placed[1]
    batch = await org.admin.improvement.GetBatch(
        improvement_pb2.GetBatchRequest(batch_id=placed[0].batch_id)
    )
    assert (batch.status, batch.session_count) == (ImprovementBatch.OPEN, 3)
    # A scheduled session is kept for the pipeline.
    with pytest.raises(CorrigoError) as err:
        await org.admin.practice.DeletePracticeSession(
            practice_pb2.DeletePracticeSessionRequest(session_id=ids[0])
        )
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "SESSION_SCHEDULED"


async def test_get_batch_sessions_pages_by_after_number_limit_and_events_limit(org: Org) -> None:
    ids = [await chat(org.admin) for _ in range(5)]
    for sid in ids:
        await use(org.admin, sid)
    first = await page(org.admin, limit=2)
    assert [s.number for s in first.sessions] == [1, 2] and first.last_number == 2
    assert [s.session.session_id for s in first.sessions] == ids[:2]
    assert first.status == ImprovementBatch.OPEN
    full = first.sessions[0]
    assert [e.type for e in full.events] == [PracticeEvent.PROMPT, PracticeEvent.RESPONSE]
    assert full.event_count == 2 and full.session.settings.style_preset == "accurate"
    second = await page(org.admin, batch_id=first.batch_id, after_number=2, limit=2)
    assert [s.number for s in second.sessions] == [3, 4] and second.last_number == 4
    last = await page(org.admin, batch_id=first.batch_id, after_number=4, events_limit=1)
    assert [s.number for s in last.sessions] == [5]
    assert [e.type for e in last.sessions[0].events] == [PracticeEvent.PROMPT]
    assert last.sessions[0].event_count == 2
    beyond = await page(org.admin, batch_id=first.batch_id, after_number=5)
    assert list(beyond.sessions) == [] and beyond.last_number == 5
    # Defaults: after_number 0, limit 10, events_limit 100.
    everything = await page(org.admin, batch_id=first.batch_id)
    assert [s.number for s in everything.sessions] == [1, 2, 3, 4, 5]
    # Bounds.
    for fields, field in [
        ({"after_number": -1}, "after_number"),
        ({"limit": -1}, "limit"),
        ({"limit": 101}, "limit"),
        ({"events_limit": -1}, "events_limit"),
        ({"events_limit": 1001}, "events_limit"),
        ({"batch_id": "x" * 33}, "batch_id"),
    ]:
        with pytest.raises(CorrigoError) as err:
            await page(org.admin, **fields)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.fields == [field]
    assert len((await page(org.admin, limit=100, events_limit=1000)).sessions) == 5
    with pytest.raises(CorrigoError) as err:
        await page(org.admin, batch_id="no-such-batch")
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_stream_batch_sessions_sends_pages_and_resumes(org: Org) -> None:
    for _ in range(5):
        await use(org.admin, await chat(org.admin))
    stream = org.admin.improvement.StreamBatchSessions(
        improvement_pb2.StreamBatchSessionsRequest(limit=2, events_limit=1)
    )
    pages = [p async for p in stream]
    assert [[s.number for s in p.sessions] for p in pages] == [[1, 2], [3, 4], [5]]
    assert [p.last_number for p in pages] == [2, 4, 5]
    assert all(len(s.events) == 1 for p in pages for s in p.sessions)
    resumed = org.admin.improvement.StreamBatchSessions(
        improvement_pb2.StreamBatchSessionsRequest(
            batch_id=pages[0].batch_id, after_number=pages[0].last_number, limit=10
        )
    )
    assert [[s.number for s in p.sessions] async for p in resumed] == [[3, 4, 5]]
    with pytest.raises(CorrigoError) as err:
        async for _ in org.admin.improvement.StreamBatchSessions(
            improvement_pb2.StreamBatchSessionsRequest(limit=500)
        ):
            pass
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_release_closes_the_batch_and_the_next_schedule_opens_another(org: Org) -> None:
    with pytest.raises(CorrigoError) as err:
        await org.admin.improvement.ReleaseBatch(
            improvement_pb2.ReleaseBatchRequest(release_id="r-0")
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.reason == "NO_ACTIVE_BATCH"
    first = [await use(org.admin, await chat(org.admin)) for _ in range(2)]
    released = await org.admin.improvement.ReleaseBatch(
        improvement_pb2.ReleaseBatchRequest(release_id="r-1")
    )
    assert released.batch_id == first[0].batch_id
    assert (released.status, released.session_count, released.release_id) == (
        ImprovementBatch.RELEASED,
        2,
        "r-1",
    )
    assert released.HasField("released_at")
    again = await org.admin.improvement.ReleaseBatch(
        improvement_pb2.ReleaseBatchRequest(release_id="r-1")
    )
    assert again == released
    with pytest.raises(CorrigoError) as err:
        await org.admin.improvement.ReleaseBatch(
            improvement_pb2.ReleaseBatchRequest(release_id="r-2")
        )
    assert err.value.reason == "NO_ACTIVE_BATCH"
    later = await use(org.admin, await chat(org.admin))
    assert later.batch_id != released.batch_id and later.number == 1
    # A session scheduled before the release keeps its batch and number.
    assert await use(org.admin, first[1].session_id) == first[1]
    old = await page(org.admin, batch_id=released.batch_id)
    assert old.status == ImprovementBatch.RELEASED and len(old.sessions) == 2
    listed = await org.admin.improvement.ListBatches(improvement_pb2.ListBatchesRequest())
    assert [(b.batch_id, b.status, b.session_count) for b in listed.batches] == [
        (released.batch_id, ImprovementBatch.RELEASED, 2),
        (later.batch_id, ImprovementBatch.OPEN, 1),
    ]
    open_only = await org.admin.improvement.ListBatches(
        improvement_pb2.ListBatchesRequest(status=ImprovementBatch.OPEN, page_size=1)
    )
    assert [b.batch_id for b in open_only.batches] == [later.batch_id]
    assert open_only.next_page_token == ""
    for bad in ("", "x" * 129, "tab\there"):
        with pytest.raises(CorrigoError) as err:
            await org.admin.improvement.ReleaseBatch(
                improvement_pb2.ReleaseBatchRequest(release_id=bad)
            )
        assert err.value.fields == ["release_id"]


async def test_who_may_schedule_read_and_release(org: Org, other_org: Org) -> None:
    project = await org.project()
    _, owner = await org.member(project.id, Member.ANNOTATOR)
    _, project_admin = await org.member(project.id, Member.ADMIN)
    _, colleague = await org.member(project.id, Member.EDITOR)
    _, service = await org.user(User.SERVICE)
    session_id = await chat(owner, project_id=project.id)
    personal_id = await chat(owner)
    # Scheduling: the owner alone (test_one_rule_for_who_may_act_on_a_session).
    for client in (colleague, project_admin, org.admin, other_org.admin):
        for sid in (session_id, personal_id):
            with pytest.raises(CorrigoError) as err:
                await use(client, sid)
            assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert (await use(owner, session_id)).number == 1
    assert (await use(owner, personal_id)).number == 2
    # Reading and releasing: service and organization admin roles only.
    for client in (owner, project_admin):
        for call in (
            page(client),
            client.improvement.ListBatches(improvement_pb2.ListBatchesRequest()),
            client.improvement.ReleaseBatch(improvement_pb2.ReleaseBatchRequest(release_id="x")),
        ):
            with pytest.raises(CorrigoError) as err:
                await call
            assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    read = await page(service)
    assert [s.session.session_id for s in read.sessions] == [session_id, personal_id]
    assert (
        await service.improvement.ReleaseBatch(improvement_pb2.ReleaseBatchRequest(release_id="s"))
    ).session_count == 2
    # Another organization's pipeline sees none of it.
    with pytest.raises(CorrigoError) as err:
        await page(other_org.admin, batch_id=read.batch_id)
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_concurrent_schedules_get_distinct_gap_free_numbers(org: Org) -> None:
    ids = await asyncio.gather(*(chat(org.admin) for _ in range(40)))
    placed = await asyncio.gather(*(use(org.admin, sid) for sid in ids))
    assert sorted(p.number for p in placed) == list(range(1, 41))
    assert len({p.batch_id for p in placed}) == 1


# Two real server processes on one PostgreSQL database.


@contextlib.asynccontextmanager
async def server_processes(db_url: str, count: int, logs: Path) -> AsyncIterator[list[str]]:
    """`count` `corrigo serve` processes on `db_url`; stopped with SIGTERM at the end."""
    servers: list[ServerProcess] = []
    try:
        for index in range(count):
            servers.append(
                ServerProcess(
                    db_url, logs / f"serve-{index}.log", extra=["--log-level", "WARNING"], grace=1
                )
            )
        for server in servers:
            await asyncio.to_thread(server.wait_serving)
        yield [server.target for server in servers]
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)


async def test_two_server_processes_number_200_sessions_without_gaps(
    org: Org, tmp_path: Path
) -> None:
    org.require_shared_database()
    semaphore = asyncio.Semaphore(16)

    async def prepared() -> int:
        async with semaphore:
            return await chat(org.admin)

    first_wave = await asyncio.gather(*(prepared() for _ in range(200)))
    second_wave = await asyncio.gather(*(prepared() for _ in range(200)))
    async with server_processes(org.running.db_url, 2, tmp_path) as targets:
        clients = [AsyncClient(target, org.admin_token) for target in targets]
        org.clients.extend(clients)

        async def schedule(index: int, session_id: int) -> Placed:
            return await use(clients[index % 2], session_id)

        # 200 sessions through both processes at once: numbers 1..200, no gap, no duplicate.
        placed = await asyncio.gather(*(schedule(i, s) for i, s in enumerate(first_wave)))
        assert sorted(p.number for p in placed) == list(range(1, 201))
        assert len({p.batch_id for p in placed}) == 1

        # Release that batch, then 200 more with a second release racing them: sent once
        # 100 are done, while the next 80 are still being scheduled (at most 16 in flight,
        # so some arrive after it); the last 20 go after its answer, into a new batch.
        await clients[0].improvement.ReleaseBatch(
            improvement_pb2.ReleaseBatchRequest(release_id="wave-1")
        )
        hundred_done = asyncio.Event()
        in_flight = asyncio.Semaphore(16)
        done = 0

        async def counted(index: int, session_id: int) -> Placed:
            nonlocal done
            async with in_flight:
                answer = await schedule(index, session_id)
            done += 1
            if done == 100:
                hundred_done.set()
            return answer

        racing = [asyncio.create_task(counted(i, s)) for i, s in enumerate(second_wave[:180])]
        await hundred_done.wait()
        released = await clients[1].improvement.ReleaseBatch(
            improvement_pb2.ReleaseBatchRequest(release_id="wave-2")
        )
        placed = await asyncio.gather(*racing)
        placed += await asyncio.gather(*(schedule(i, s) for i, s in enumerate(second_wave[180:])))

    by_batch: dict[str, list[int]] = defaultdict(list)
    for answer in placed:
        by_batch[answer.batch_id].append(answer.number)
    # Every session in exactly one batch, each batch numbered 1..n without a gap.
    assert released.batch_id in by_batch and len(by_batch) == 2
    assert released.session_count == len(by_batch[released.batch_id]) >= 100
    for numbers in by_batch.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert sum(len(n) for n in by_batch.values()) == 200
    # What the batches hold agrees with the answers: each session in exactly one of them.
    held: dict[int, str] = {}
    for batch_id in by_batch:
        stream = org.admin.improvement.StreamBatchSessions(
            improvement_pb2.StreamBatchSessionsRequest(batch_id=batch_id, limit=100)
        )
        async for response in stream:
            for entry in response.sessions:
                assert entry.session.session_id not in held
                held[entry.session.session_id] = batch_id
    assert held == {a.session_id: a.batch_id for a in placed}
