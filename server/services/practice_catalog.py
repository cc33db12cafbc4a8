"""PracticeCatalogService: classes, agents and knowledge items.

Items live in the organization (project null) or in one project. Reads of a project's
items need the RPC's permission (`practice`) there; organization-wide items are readable
by every user of the organization. Writes need `model_admin` where the item lives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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
from corrigo.server.store.practice_catalog import KnowledgeItem, PracticeAgent, PracticeClass
from corrigo.server.validation import Violations
from corrigo.v1 import practice_pb2, practice_pb2_grpc

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
    message: practice_pb2.PracticeClass, fields: Sequence[str], checks: Violations
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


def _agent_values(
    message: practice_pb2.PracticeAgent, fields: Sequence[str], checks: Violations
) -> dict[str, Any]:
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
    return values


def _knowledge_values(
    message: practice_pb2.KnowledgeItem, fields: Sequence[str], checks: Violations
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


async def _agent_answers(rows: Sequence[PracticeAgent]) -> list[practice_pb2.PracticeAgent]:
    examples = await practice_catalog.agent_example_ids([r.id for r in rows])
    return [protos.agent_proto(r, examples.get(r.id, [])) for r in rows]


@dataclass(frozen=True)
class _Kind:
    """One resource of the catalog: its table, its request fields and its messages."""

    model: type[PracticeClass] | type[PracticeAgent] | type[KnowledgeItem]
    what: str  # its name in NOT_FOUND messages
    id_field: str  # the request field holding an item's id
    field: str  # the request field holding the item's message
    fields: tuple[str, ...]  # the fields a create writes and an update may
    values: Callable[[Any, Sequence[str], Violations], dict[str, Any]]
    answers: Callable[[Sequence[Any]], Awaitable[Sequence[Message]]]
    # Agents only: the field listing default few-shot examples (the caller's own).
    examples_field: str | None = None


def _each(proto: Callable[[Any], Message]) -> Callable[[Sequence[Any]], Awaitable[list[Message]]]:
    async def answers(rows: Sequence[Any]) -> list[Message]:
        return [proto(row) for row in rows]

    return answers


_CLASSES = _Kind(
    PracticeClass,
    "class",
    "class_id",
    "practice_class",
    _CLASS_FIELDS,
    _class_values,
    _each(protos.class_proto),
)
_AGENTS = _Kind(
    PracticeAgent,
    "agent",
    "agent_id",
    "agent",
    _AGENT_FIELDS,
    _agent_values,
    _agent_answers,
    examples_field="few_shot_example_ids",
)
_KNOWLEDGE = _Kind(
    KnowledgeItem,
    "knowledge item",
    "knowledge_id",
    "knowledge_item",
    _KNOWLEDGE_FIELDS,
    _knowledge_values,
    _each(protos.knowledge_proto),
)


def _checked(
    kind: _Kind, message: Any, fields: Sequence[str], checks: Violations
) -> tuple[dict[str, Any], list[int] | None]:
    """The item's column values and (agents, when written) its default example ids,
    checked; INVALID_ARGUMENT naming every problem."""
    values = kind.values(message, fields, checks)
    example_ids = None
    if kind.examples_field is not None and kind.examples_field in fields:
        example_ids = protos.check_ids(
            checks,
            f"{kind.field}.{kind.examples_field}",
            list(getattr(message, kind.examples_field)),
            _MAX_AGENT_EXAMPLES,
        )
    checks.raise_if_any()
    return values, example_ids


async def _check_examples_owned(kind: _Kind, example_ids: list[int] | None) -> None:
    """NOT_FOUND for a default example that is not the caller's."""
    if example_ids:
        owned = await few_shot.owned_ids(auth.current().principal.user_id, example_ids)
        for example_id in example_ids:
            if example_id not in owned:
                raise not_found(
                    "few-shot example", f"{kind.field}.{kind.examples_field}", example_id
                )


async def _find(kind: _Kind, request: Any, *, writing: bool) -> Any:
    """The request's item of the caller's organization, after checking the RPC's
    permission where it lives (organization-wide items: every user may read, writers
    need the organization permission)."""
    item_id = getattr(request, kind.id_field)
    checks = Violations()
    checks.id(kind.id_field, item_id)
    checks.raise_if_any()
    row = await practice_catalog.get(kind.model, auth.current().principal.organization_id, item_id)
    if row is None:
        raise NotFound(f"{kind.what} {item_id} not found")
    await authorize_scope(row.project_id, organization_checked=writing)
    return row


async def _create(kind: _Kind, request: Any) -> Any:
    message = getattr(request, kind.field)
    checks = Violations()
    scope = _check_project_id(checks, f"{kind.field}.project_id", message.project_id)
    values, example_ids = _checked(kind, message, kind.fields, checks)
    await authorize_scope(scope, organization_checked=True)
    await _check_examples_owned(kind, example_ids)
    row = await practice_catalog.create(
        kind.model, auth.current().principal.organization_id, scope, values, example_ids or ()
    )
    return (await kind.answers([row]))[0]


async def _get(kind: _Kind, request: Any) -> Any:
    return (await kind.answers([await _find(kind, request, writing=False)]))[0]


async def _list(kind: _Kind, request: Any) -> tuple[Sequence[Any], str]:
    """A page of the organization-wide items, plus those of the request's project."""
    checks = Violations()
    scope = _check_project_id(checks, "project_id", request.project_id)
    page = pagination.page(request, checks, default=_PAGE_DEFAULT, maximum=_PAGE_MAX)
    checks.raise_if_any()
    await authorize_scope(scope, organization_checked=False)
    rows = await practice_catalog.list_items(
        kind.model, auth.current().principal.organization_id, scope, page.after(), page.fetch
    )
    rows, token = page.finish(rows, lambda r: r.id)
    return await kind.answers(rows), token


async def _update(kind: _Kind, request: Any) -> Any:
    message = getattr(request, kind.field)
    checks = Violations()
    fields = fields_to_write(request.update_mask, message, kind.fields, checks)
    values, example_ids = _checked(kind, message, fields, checks)
    row = await _find(kind, request, writing=True)
    await _check_examples_owned(kind, example_ids)
    return (await kind.answers([await practice_catalog.update(row, values, example_ids)]))[0]


async def _delete(kind: _Kind, request: Any) -> empty_pb2.Empty:
    row = await _find(kind, request, writing=True)
    await practice_catalog.delete(kind.model, row.id)
    return empty_pb2.Empty()


class PracticeCatalogService(practice_pb2_grpc.PracticeCatalogServiceServicer):
    """Each resource's five RPCs, served by the one implementation above."""

    async def CreatePracticeClass(
        self, request: practice_pb2.CreatePracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeClass:
        return await _create(_CLASSES, request)

    async def GetPracticeClass(
        self, request: practice_pb2.GetPracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeClass:
        return await _get(_CLASSES, request)

    async def ListPracticeClasses(
        self, request: practice_pb2.ListPracticeClassesRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListPracticeClassesResponse:
        answers, token = await _list(_CLASSES, request)
        return practice_pb2.ListPracticeClassesResponse(
            practice_classes=answers, next_page_token=token
        )

    async def UpdatePracticeClass(
        self, request: practice_pb2.UpdatePracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeClass:
        return await _update(_CLASSES, request)

    async def DeletePracticeClass(
        self, request: practice_pb2.DeletePracticeClassRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _delete(_CLASSES, request)

    async def CreatePracticeAgent(
        self, request: practice_pb2.CreatePracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeAgent:
        return await _create(_AGENTS, request)

    async def GetPracticeAgent(
        self, request: practice_pb2.GetPracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeAgent:
        return await _get(_AGENTS, request)

    async def ListPracticeAgents(
        self, request: practice_pb2.ListPracticeAgentsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListPracticeAgentsResponse:
        answers, token = await _list(_AGENTS, request)
        return practice_pb2.ListPracticeAgentsResponse(agents=answers, next_page_token=token)

    async def UpdatePracticeAgent(
        self, request: practice_pb2.UpdatePracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.PracticeAgent:
        return await _update(_AGENTS, request)

    async def DeletePracticeAgent(
        self, request: practice_pb2.DeletePracticeAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _delete(_AGENTS, request)

    async def CreateKnowledgeItem(
        self, request: practice_pb2.CreateKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.KnowledgeItem:
        return await _create(_KNOWLEDGE, request)

    async def GetKnowledgeItem(
        self, request: practice_pb2.GetKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.KnowledgeItem:
        return await _get(_KNOWLEDGE, request)

    async def ListKnowledgeItems(
        self, request: practice_pb2.ListKnowledgeItemsRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.ListKnowledgeItemsResponse:
        answers, token = await _list(_KNOWLEDGE, request)
        return practice_pb2.ListKnowledgeItemsResponse(
            knowledge_items=answers, next_page_token=token
        )

    async def UpdateKnowledgeItem(
        self, request: practice_pb2.UpdateKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> practice_pb2.KnowledgeItem:
        return await _update(_KNOWLEDGE, request)

    async def DeleteKnowledgeItem(
        self, request: practice_pb2.DeleteKnowledgeItemRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _delete(_KNOWLEDGE, request)
