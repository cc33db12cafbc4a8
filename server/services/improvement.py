"""ImprovementService: schedule practice sessions into numbered batches, page a batch
(unary and as a stream), release it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from corrigo.server.api import auth, pagination
from corrigo.server.api.errors import FailedPrecondition
from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import Violations
from corrigo.server.services import practice_protos as protos
from corrigo.server.services.practice_access import not_found, own_session
from corrigo.server.store import improvement, practice_sessions
from corrigo.v1 import errors_pb2, improvement_pb2, improvement_pb2_grpc
from corrigo.v1.improvement_pb2 import ImprovementBatch
from corrigo.v1.practice_pb2 import PracticeSession

# The documents' defaults, and maxima that keep a page well under the message limit.
LIMIT_DEFAULT, LIMIT_MAX = 10, 100
EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX = 100, 1000
_MAX_KEY = 32
_SKIP_PAYLOAD_SEARCH = "payload-search sessions are not suitable for training"


def batch_proto(row: improvement.ImprovementBatch) -> ImprovementBatch:
    return ImprovementBatch(
        batch_id=row.batch_key,
        status=ImprovementBatch.Status.ValueType(row.status),
        session_count=row.session_count,
        opened_at=to_proto(row.opened_at),
        released_at=to_proto(row.released_at),
        release_id=row.release_id or "",
    )


def _page_checks(
    request: improvement_pb2.GetBatchSessionsRequest | improvement_pb2.StreamBatchSessionsRequest,
) -> tuple[int, int]:
    checks = Violations()
    checks.check(len(request.batch_id) <= _MAX_KEY, "batch_id", f"at most {_MAX_KEY} characters")
    checks.check(request.after_number >= 0, "after_number", "must be >= 0")
    limit = checks.page_size("limit", request.limit, default=LIMIT_DEFAULT, maximum=LIMIT_MAX)
    events_limit = checks.page_size(
        "events_limit",
        request.events_limit,
        default=EVENTS_LIMIT_DEFAULT,
        maximum=EVENTS_LIMIT_MAX,
    )
    checks.raise_if_any()
    return limit, events_limit


async def _page(
    batch: improvement.ImprovementBatch, after_number: int, limit: int, events_limit: int
) -> improvement_pb2.GetBatchSessionsResponse:
    """One page in a fixed number of queries, whatever its size."""
    entries = await improvement.entries(batch.id, after_number, limit)
    session_ids = [session_id for _, session_id, _ in entries]
    sessions = {s.id: s for s in await practice_sessions.get_many(session_ids)}
    bundles = {
        b.session.id: b
        for b in await practice_sessions.load(list(sessions.values()), responses=False)
    }
    events = await practice_sessions.events_of(session_ids, events_limit)
    counts = await practice_sessions.event_counts(session_ids)
    return improvement_pb2.GetBatchSessionsResponse(
        batch_id=batch.batch_key,
        last_number=entries[-1][0] if entries else after_number,
        status=ImprovementBatch.Status.ValueType(batch.status),
        sessions=[
            improvement_pb2.BatchSession(
                number=number,
                scheduled_at=to_proto(scheduled_at),
                session=protos.session_proto(bundles[session_id]),
                events=[protos.event_proto(e) for e in events.get(session_id, [])],
                event_count=counts.get(session_id, 0),
            )
            for number, session_id, scheduled_at in entries
        ],
    )


class ImprovementService(improvement_pb2_grpc.ImprovementServiceServicer):
    async def UseSessionForImprovement(
        self,
        request: improvement_pb2.UseSessionForImprovementRequest,
        context: grpc.aio.ServicerContext,
    ) -> improvement_pb2.UseSessionForImprovementResponse:
        # Who may act on a practice session: the one rule PracticeSessionService applies.
        session = own_session()
        org_id = auth.current().principal.organization_id
        logged = await improvement.has_prompt_and_response(session.id)
        if logged is None:
            raise not_found("practice session", "session_id", session.id)
        if not logged:
            raise FailedPrecondition(
                f"practice session {session.id} holds no prompt with its response yet",
                reason=errors_pb2.SESSION_EVENTS_MISSING,
            )
        if session.kind == PracticeSession.PAYLOAD_SEARCH:
            return improvement_pb2.UseSessionForImprovementResponse(
                session_id=session.id, skipped=True, skip_reason=_SKIP_PAYLOAD_SEARCH
            )
        placed = await improvement.schedule(org_id, session.id)
        return improvement_pb2.UseSessionForImprovementResponse(
            session_id=session.id,
            batch_id=placed.batch_key,
            number=placed.number,
            scheduled_at=to_proto(placed.scheduled_at),
        )

    async def GetBatchSessions(
        self,
        request: improvement_pb2.GetBatchSessionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> improvement_pb2.GetBatchSessionsResponse:
        limit, events_limit = _page_checks(request)
        batch = await improvement.find_batch(
            auth.current().principal.organization_id, request.batch_id
        )
        return await _page(batch, request.after_number, limit, events_limit)

    async def StreamBatchSessions(
        self,
        request: improvement_pb2.StreamBatchSessionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[improvement_pb2.GetBatchSessionsResponse]:
        limit, events_limit = _page_checks(request)
        batch = await improvement.find_batch(
            auth.current().principal.organization_id, request.batch_id
        )
        after = request.after_number
        first = True
        while True:
            page = await _page(batch, after, limit, events_limit)
            if page.sessions or first:
                yield page
            first = False
            if len(page.sessions) < limit:
                return
            after = page.last_number

    async def ReleaseBatch(
        self, request: improvement_pb2.ReleaseBatchRequest, context: grpc.aio.ServicerContext
    ) -> ImprovementBatch:
        checks = Violations()
        checks.check(
            1 <= len(request.release_id) <= 128 and request.release_id.isprintable(),
            "release_id",
            "required: 1..128 printable characters",
        )
        checks.raise_if_any()
        row = await improvement.release(
            auth.current().principal.organization_id, request.release_id
        )
        return batch_proto(row)

    async def GetBatch(
        self, request: improvement_pb2.GetBatchRequest, context: grpc.aio.ServicerContext
    ) -> ImprovementBatch:
        checks = Violations()
        checks.check(
            len(request.batch_id) <= _MAX_KEY, "batch_id", f"at most {_MAX_KEY} characters"
        )
        checks.raise_if_any()
        row = await improvement.find_batch(
            auth.current().principal.organization_id, request.batch_id
        )
        return batch_proto(row)

    async def ListBatches(
        self, request: improvement_pb2.ListBatchesRequest, context: grpc.aio.ServicerContext
    ) -> improvement_pb2.ListBatchesResponse:
        checks = Violations()
        if request.status:
            checks.enum(
                "status",
                request.status,
                {ImprovementBatch.OPEN: "OPEN", ImprovementBatch.RELEASED: "RELEASED"},
            )
        org_id = auth.current().principal.organization_id
        page = pagination.page(request, checks, default=100, maximum=1000)
        checks.raise_if_any()
        rows = await improvement.list_batches(org_id, request.status, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r.id)
        return improvement_pb2.ListBatchesResponse(
            batches=[batch_proto(r) for r in rows], next_page_token=token
        )
