"""FewShotExampleService: a user's own few-shot examples."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from corrigo.server.api import auth, pagination
from corrigo.server.api.errors import NotFound
from corrigo.server.api.fieldmask import fields_to_write
from corrigo.server.api.validation import Violations
from corrigo.server.services import practice_protos as protos
from corrigo.server.store import few_shot
from corrigo.v1 import practice_pb2, practice_pb2_grpc

_FIELDS = ("input_text", "output_text", "is_active", "title", "meta")
_MAX_TEXT = 100_000


def _values(
    message: practice_pb2.FewShotExample, fields: tuple[str, ...] | list[str], checks: Violations
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("input_text", "output_text"):
        if name in fields:
            checks.text(f"example.{name}", getattr(message, name), _MAX_TEXT, required=True)
            values[name] = getattr(message, name)
    if "is_active" in fields:
        values["is_active"] = message.is_active
    if "title" in fields:
        title = message.title.value if message.HasField("title") else None
        if title is not None:
            checks.text("example.title", title, 200)
        values["title"] = title
    if "meta" in fields:
        values["meta"] = protos.check_object(checks, "example.meta", message.meta)
    return values


async def _own(example_id: int) -> few_shot.FewShotExample:
    checks = Violations()
    checks.id("example_id", example_id)
    checks.raise_if_any()
    row = await few_shot.get_owned(auth.current().principal.user_id, example_id)
    if row is None:
        raise NotFound(f"few-shot example {example_id} not found")
    return row


class FewShotExampleService(practice_pb2_grpc.FewShotExampleServiceServicer):
    async def CreateFewShotExample(
        self, request: practice_pb2.CreateFewShotExampleRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.FewShotExample:
        checks = Violations()
        values = _values(request.example, ("input_text", "output_text", "title", "meta"), checks)
        checks.raise_if_any()
        values["is_active"] = not request.inactive
        row = await few_shot.create(auth.current().principal.user_id, values)
        return protos.example_proto(row)

    async def GetFewShotExample(
        self, request: practice_pb2.GetFewShotExampleRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.FewShotExample:
        return protos.example_proto(await _own(request.example_id))

    async def ListFewShotExamples(
        self, request: practice_pb2.ListFewShotExamplesRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListFewShotExamplesResponse:
        checks = Violations()
        call = auth.current()
        page = pagination.page(request, checks, default=100, maximum=1000)
        checks.raise_if_any()
        rows = await few_shot.list_owned(call.principal.user_id, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r.id)
        return practice_pb2.ListFewShotExamplesResponse(
            examples=[protos.example_proto(r) for r in rows], next_page_token=token
        )

    async def UpdateFewShotExample(
        self, request: practice_pb2.UpdateFewShotExampleRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.FewShotExample:
        checks = Violations()
        fields = fields_to_write(request.update_mask, request.example, _FIELDS, checks)
        values = _values(request.example, fields, checks)
        checks.raise_if_any()
        row = await _own(request.example_id)
        return protos.example_proto(await few_shot.update(row, values))

    async def DeleteFewShotExample(
        self, request: practice_pb2.DeleteFewShotExampleRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        row = await _own(request.example_id)
        await few_shot.delete(row.id)
        return empty_pb2.Empty()
