"""Creates answered once per request id (AIP-155).

An RPC whose `(corrigo.v1.retry)` is RETRY_REQUEST_ID runs, when its request carries a
`request_id`, in one transaction with the id's claim and its answer: the same caller
sending the same id to the same RPC within a day gets the first call's answer, and the
create happens once. A call that failed kept nothing, so its retry acts anew.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from corrigo.server.api import auth
from corrigo.server.api.registration import serialize_or_pass
from corrigo.server.api.validation import Violations
from corrigo.server.store import request_ids
from corrigo.server.store.database import atomic
from corrigo.v1 import options_pb2

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

# Work to start once the current call's transaction committed (None: outside one).
_after_commit: contextvars.ContextVar[list[Callable[[], Awaitable[None]]] | None] = (
    contextvars.ContextVar("corrigo_after_commit", default=None)
)


async def after_commit(work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` once what the call wrote is committed: background work started inside a
    request id's transaction would not find the rows it is about."""
    pending = _after_commit.get()
    if pending is None:
        await work()
    else:
        pending.append(work)


def answer_type(path: str) -> type[Message] | None:
    """The answer's message class of the RPC at `path` (`/corrigo.v1.Service/Method`) when
    it is answered once per request id, else None."""
    try:
        method = descriptor_pool.Default().FindMethodByName(path.strip("/").replace("/", "."))
    except KeyError:
        return None
    if method.GetOptions().Extensions[options_pb2.retry] != options_pb2.RETRY_REQUEST_ID:
        return None
    answer: type[Message] = message_factory.GetMessageClass(method.output_type)
    return answer


def _check(request_id: str) -> None:
    checks = Violations()
    try:
        well_formed = str(uuid.UUID(request_id)) == request_id.lower()
    except ValueError:
        well_formed = False
    checks.check(
        well_formed, "request_id", "must be a UUID such as 123e4567-e89b-42d3-a456-426614174000"
    )
    checks.raise_if_any()


def answered_once(inner: Behavior, path: str, answer: type[Message]) -> Behavior:
    """`inner` (a unary RPC's behavior) answered once per request id."""

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        # An undecodable request has none: the decode guard inside answers it.
        request_id: str = getattr(request, "request_id", "")
        if not request_id:
            return await inner(request, context)
        _check(request_id)
        user_id = auth.current().principal.user_id
        pending: list[Callable[[], Awaitable[None]]] = []
        token = _after_commit.set(pending)
        try:
            async with atomic():
                stored = await request_ids.claim(user_id, path, request_id)
                if stored is not None:
                    return answer.FromString(stored)
                result = await inner(request, context)
                await request_ids.record(user_id, path, request_id, serialize_or_pass(result))
        finally:
            _after_commit.reset(token)
        for work in pending:
            await work()
        return result

    return behavior
