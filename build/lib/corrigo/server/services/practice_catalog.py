"""PracticeCatalogService: classes, agents and knowledge items.

Items live in the organization (project null) or in one project. Reads of a project's
items need the RPC's permission (`practice`) there; organization-wide items are readable
by every user of the organization. Writes need `model_admin` where the item lives.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from corrigo.server import auth, pagination
from corrigo.server.errors import NotFound
from corrigo.server.fieldmask import fields_to_write
from corrigo.server.services import practice_protos as protos
from corrigo.server.services.practice_access import authorize_scope, not_found
from corrigo.server.store import few_shot, practice_catalog
from corrigo.server.store.practice_catalog import (
    Item,
    KnowledgeItem,
    PracticeAgent,
    PracticeClass,
)
from corrigo.server.validation import Violations
from corrigo.v1 import practice_pb2, practice_pb2_grpc

_SERVICE = "/corrigo.v1.PracticeCatalogService/"
_PAGE_DEFAULT = 100
_PAGE_MAX = 1000
_MAX_MODELS = 20
_MAX_AGENT_EXAMPLES = 50

_CLASS_FIELDS = ("name", "description", "model_names")
_AGENT_FIELDS = (
    "name",
    "instructions",
    "style_preset",
    "style_params",
    "generation_params",
    "few_shot_example_ids",
)
_KNOWLEDGE_FIELDS = ("title", "content", "meta")


def _check_project_id(checks: Violations, field: str, value: int) -> int | None:
    checks.check(value >= 0, field, f"must be >= 0 (0: organization-wide), got {value}")
    return value or None


def _class_values(
    message: practice_pb2.PracticeClass, fields: tuple[str, ...] | list[str], checks: Violations
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    prefix = "practice_class."
    if "name" in fields:
        checks.text(prefix + "name", message.name, 200, required=True)
        values["name"] = message.name
    if "description" in fields:
        checks.text(prefix + "description", message.description, 10_000)
        values["description"] = message.description
    if "model_names" in fields:
        names = list(message.model_names)
        field = prefix + "model_names"
        checks.check(1 <= len(names) <= _MAX_MODELS, field, f"1..{_MAX_MODELS} model names")
        checks.check(
            all(name.strip() and len(name) <= 200 for name in names),
            field,
            "each name 1..200 characters",
        )
        checks.check(len(set(names)) == len(names), field, "names must not repeat")
        values["model_names"] = names
    return values


async def _agent_values(
    message: practice_pb2.PracticeAgent, fields: tuple[str, ...] | list[str], checks: Violations
) -> tuple[dict[str, Any], list[int] | None]:
    """The agent's column values and (when written) its default example ids, checked;
    NOT_FOUND for an example that is not the caller's."""
    values: dict[str, Any] = {}
    prefix = "agent."
    if "name" in fields:
        checks.text(prefix + "name", message.name, 200, required=True)
        values["name"] = message.name
    if "instructions" in fields:
        checks.text(prefix + "instructions", message.instructions, 100_000)
        values["instructions"] = message.instructions
    if "style_preset" in fields:
        preset = message.style_preset or protos.DEFAULT_STYLE_PRESET
        protos.check_style_preset(checks, prefix + "style_preset", preset)
        values["style_preset"] = preset
    for name in ("style_params", "generation_params"):
        if name in fields:
            values[name] = protos.check_object(checks, prefix + name, getattr(message, name))
    example_ids = None
    if "few_shot_example_ids" in fields:
        example_ids = protos.check_ids(
            checks,
            prefix + "few_shot_example_ids",
            list(message.few_shot_example_ids),
            _MAX_AGENT_EXAMPLES,
        )
    checks.raise_if_any()
    if example_ids:
        owned = await few_shot.owned_ids(auth.current().principal.user_id, example_ids)
        for example_id in example_ids:
            if example_id not in owned:
                raise not_found("few-shot example", "agent.few_shot_example_ids", example_id)
    return values, example_ids


def _knowledge_values(
    message: practice_pb2.KnowledgeItem, fields: tuple[str, ...] | list[str], checks: Violations
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    prefix = "knowledge_item."
    if "title" in fields:
        checks.text(prefix + "title", message.title, 200, required=True)
        values["title"] = message.title
    if "content" in fields:
        checks.text(prefix + "content", message.content, 1_000_000)
        values["content"] = message.content
    if "meta" in fields:
        values["meta"] = protos.check_object(checks, prefix + "meta", message.meta)
    return values


async def _find(model: type[Item], what: str, field: str, item_id: int, *, writing: bool) -> Item:
    """An item of the caller's organization, after checking the RPC's permission where it
    lives (organization-wide items: every user may read, writers need the organization
    permission)."""
    checks = Violations()
    checks.id(field, item_id)
    checks.raise_if_any()
    row = await practice_catalog.get(model, auth.current().principal.organization_id, item_id)
    if row is None:
        raise NotFound(f"{what} {item_id} not found")
    await authorize_scope(row.project_id, organization_checked=writing)
    return row


async def _list(
    method: str, model: type[Item], request: Message, project_id: int
) -> tuple[list[Item], str]:
    checks = Violations()
    scope = _check_project_id(checks, "project_id", project_id)
    call = auth.current()
    page = pagination.IdPager(
        _SERVICE + method,
        call.principal.organization_id,
        request,
        checks,
        default=_PAGE_DEFAULT,
        maximum=_PAGE_MAX,
    )
    checks.raise_if_any()
    await authorize_scope(scope, organization_checked=False)
    rows = await practice_catalog.list_items(
        model, call.principal.organization_id, scope, page.after(), page.fetch
    )
    return page.finish(rows, lambda r: r.id)


class PracticeCatalogService(practice_pb2_grpc.PracticeCatalogServiceServicer):
    async def CreatePracticeClass(
        self, request: practice_pb2.CreatePracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeClass:
        checks = Violations()
        message = request.practice_class
        scope = _check_project_id(checks, "practice_class.project_id", message.project_id)
        values = _class_values(message, _CLASS_FIELDS, checks)
        checks.raise_if_any()
        await authorize_scope(scope, organization_checked=True)
        row = await practice_catalog.create(
            PracticeClass, auth.current().principal.organization_id, scope, values
        )
        return protos.class_proto(row)

    async def GetPracticeClass(
        self, request: practice_pb2.GetPracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeClass:
        return protos.class_proto(
            await _find(PracticeClass, "class", "class_id", request.class_id, writing=False)
        )

    async def ListPracticeClasses(
        self, request: practice_pb2.ListPracticeClassesRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListPracticeClassesResponse:
        rows, token = await _list("ListPracticeClasses", PracticeClass, request, request.project_id)
        return practice_pb2.ListPracticeClassesResponse(
            practice_classes=[protos.class_proto(r) for r in rows], next_page_token=token
        )

    async def UpdatePracticeClass(
        self, request: practice_pb2.UpdatePracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeClass:
        checks = Violations()
        fields = fields_to_write(request.update_mask, request.practice_class, _CLASS_FIELDS, checks)
        values = _class_values(request.practice_class, fields, checks)
        checks.raise_if_any()
        row = await _find(PracticeClass, "class", "class_id", request.class_id, writing=True)
        return protos.class_proto(await practice_catalog.update(row, values))

    async def DeletePracticeClass(
        self, request: practice_pb2.DeletePracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        row = await _find(PracticeClass, "class", "class_id", request.class_id, writing=True)
        await practice_catalog.delete(PracticeClass, row.id)
        return empty_pb2.Empty()

    async def CreatePracticeAgent(
        self, request: practice_pb2.CreatePracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeAgent:
        checks = Violations()
        scope = _check_project_id(checks, "agent.project_id", request.agent.project_id)
        checks.raise_if_any()
        await authorize_scope(scope, organization_checked=True)
        values, example_ids = await _agent_values(request.agent, _AGENT_FIELDS, checks)
        row = await practice_catalog.create_agent(
            auth.current().principal.organization_id, scope, values, example_ids or []
        )
        return protos.agent_proto(row, example_ids or [])

    async def GetPracticeAgent(
        self, request: practice_pb2.GetPracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeAgent:
        row = await _find(PracticeAgent, "agent", "agent_id", request.agent_id, writing=False)
        return await _agent_answer(row)

    async def ListPracticeAgents(
        self, request: practice_pb2.ListPracticeAgentsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListPracticeAgentsResponse:
        rows, token = await _list("ListPracticeAgents", PracticeAgent, request, request.project_id)
        examples = await practice_catalog.agent_example_ids([r.id for r in rows])
        return practice_pb2.ListPracticeAgentsResponse(
            agents=[protos.agent_proto(r, examples.get(r.id, [])) for r in rows],
            next_page_token=token,
        )

    async def UpdatePracticeAgent(
        self, request: practice_pb2.UpdatePracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeAgent:
        checks = Violations()
        fields = fields_to_write(request.update_mask, request.agent, _AGENT_FIELDS, checks)
        checks.raise_if_any()
        row = await _find(PracticeAgent, "agent", "agent_id", request.agent_id, writing=True)
        values, example_ids = await _agent_values(request.agent, fields, checks)
        await practice_catalog.update_agent(row, values, example_ids)
        return await _agent_answer(row)

    async def DeletePracticeAgent(
        self, request: practice_pb2.DeletePracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        row = await _find(PracticeAgent, "agent", "agent_id", request.agent_id, writing=True)
        await practice_catalog.delete(PracticeAgent, row.id)
        return empty_pb2.Empty()

    async def CreateKnowledgeItem(
        self, request: practice_pb2.CreateKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.KnowledgeItem:
        checks = Violations()
        message = request.knowledge_item
        scope = _check_project_id(checks, "knowledge_item.project_id", message.project_id)
        values = _knowledge_values(message, _KNOWLEDGE_FIELDS, checks)
        checks.raise_if_any()
        await authorize_scope(scope, organization_checked=True)
        row = await practice_catalog.create(
            KnowledgeItem, auth.current().principal.organization_id, scope, values
        )
        return protos.knowledge_proto(row)

    async def GetKnowledgeItem(
        self, request: practice_pb2.GetKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.KnowledgeItem:
        return protos.knowledge_proto(
            await _find(
                KnowledgeItem, "knowledge item", "knowledge_id", request.knowledge_id, writing=False
            )
        )

    async def ListKnowledgeItems(
        self, request: practice_pb2.ListKnowledgeItemsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListKnowledgeItemsResponse:
        rows, token = await _list("ListKnowledgeItems", KnowledgeItem, request, request.project_id)
        return practice_pb2.ListKnowledgeItemsResponse(
            knowledge_items=[protos.knowledge_proto(r) for r in rows], next_page_token=token
        )

    async def UpdateKnowledgeItem(
        self, request: practice_pb2.UpdateKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.KnowledgeItem:
        checks = Violations()
        fields = fields_to_write(
            request.update_mask, request.knowledge_item, _KNOWLEDGE_FIELDS, checks
        )
        values = _knowledge_values(request.knowledge_item, fields, checks)
        checks.raise_if_any()
        row = await _find(
            KnowledgeItem, "knowledge item", "knowledge_id", request.knowledge_id, writing=True
        )
        return protos.knowledge_proto(await practice_catalog.update(row, values))

    async def DeleteKnowledgeItem(
        self, request: practice_pb2.DeleteKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        row = await _find(
            KnowledgeItem, "knowledge item", "knowledge_id", request.knowledge_id, writing=True
        )
        await practice_catalog.delete(KnowledgeItem, row.id)
        return empty_pb2.Empty()


async def _agent_answer(row: PracticeAgent) -> practice_pb2.PracticeAgent:
    examples = await practice_catalog.agent_example_ids([row.id])
    return protos.agent_proto(row, examples.get(row.id, []))
