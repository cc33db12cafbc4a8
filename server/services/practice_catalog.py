"""PracticeCatalogService: classes, agents and knowledge items.

Items live in the organization (project null) or in one project. Reads of a project's
items need the RPC's permission (`practice`) there; organization-wide items are readable
by every user of the organization. Writes need `model_admin` where the item lives. The
lookups of `permissions.Lookup` for the catalog are here: they find the item (or the
scope) and check the permission there before the handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from corrigo.server.api import auth, pagination
from corrigo.server.api.errors import NotFound
from corrigo.server.api.fieldmask import fields_to_write
from corrigo.server.api.permissions import Lookup
from corrigo.server.api.validation import Violations
from corrigo.server.services import practice_protos as protos
from corrigo.server.services.practice_access import authorize_scope, not_found
from corrigo.server.store import few_shot, practice_catalog
from corrigo.server.store.practice_catalog import KnowledgeItem, PracticeAgent, PracticeClass
from corrigo.v1 import practice_pb2, practice_pb2_grpc

_PAGE_DEFAULT = 100
_PAGE_MAX = 1000
_MAX_MODELS = 20
_MAX_AGENT_EXAMPLES = 50

# A field's check: given the checks, the field's path and its value, the column value.
_Check = Callable[[Violations, str, Any], Any]


def _text(maximum: int, *, required: bool = False) -> _Check:
    def check(checks: Violations, field: str, value: str) -> str:
        checks.text(field, value, maximum, required=required)
        return value

    return check


def _model_names(checks: Violations, field: str, value: Sequence[str]) -> list[str]:
    names = list(value)
    checks.check(1 <= len(names) <= _MAX_MODELS, field, f"1..{_MAX_MODELS} model names")
    checks.check(
        all(name.strip() and len(name) <= 200 for name in names),
        field,
        "each name 1..200 characters",
    )
    checks.check(len(set(names)) == len(names), field, "names must not repeat")
    return names


def _style_preset(checks: Violations, field: str, value: str) -> str:
    preset = value or protos.DEFAULT_STYLE_PRESET
    protos.check_style_preset(checks, field, preset)
    return preset


def _each(proto: Callable[[Any], Message]) -> Callable[[Sequence[Any]], Awaitable[list[Message]]]:
    async def answers(rows: Sequence[Any]) -> list[Message]:
        return [proto(row) for row in rows]

    return answers


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
    checks: dict[str, _Check]  # the columns a create writes and an update may, in order
    answers: Callable[[Sequence[Any]], Awaitable[Sequence[Message]]]
    list_answer: type[Message]  # the List RPC's response, whose `list_field` holds the page
    list_field: str
    # Agents only: the field listing default few-shot examples (the caller's own).
    examples_field: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field a create writes and an update may name."""
        examples = (self.examples_field,) if self.examples_field else ()
        return (*self.checks, *examples)


_CLASSES = _Kind(
    PracticeClass,
    "class",
    "class_id",
    "practice_class",
    {"name": _text(200, required=True), "description": _text(10_000), "model_names": _model_names},
    _each(protos.class_proto),
    practice_pb2.ListPracticeClassesResponse,
    "practice_classes",
)
_AGENTS = _Kind(
    PracticeAgent,
    "agent",
    "agent_id",
    "agent",
    {
        "name": _text(200, required=True),
        "instructions": _text(100_000),
        "style_preset": _style_preset,
        "style_params": protos.check_object,
        "generation_params": protos.check_object,
    },
    _agent_answers,
    practice_pb2.ListPracticeAgentsResponse,
    "agents",
    examples_field="few_shot_example_ids",
)
_KNOWLEDGE = _Kind(
    KnowledgeItem,
    "knowledge item",
    "knowledge_id",
    "knowledge_item",
    {"title": _text(200, required=True), "content": _text(1_000_000), "meta": protos.check_object},
    _each(protos.knowledge_proto),
    practice_pb2.ListKnowledgeItemsResponse,
    "knowledge_items",
)


def _check_project_id(checks: Violations, field: str, value: int) -> int | None:
    checks.check(value >= 0, field, f"must be >= 0 (0: organization-wide), got {value}")
    return value or None


def _checked(
    kind: _Kind, message: Any, fields: Sequence[str], checks: Violations
) -> tuple[dict[str, Any], list[int] | None]:
    """The item's column values and (agents, when written) its default example ids,
    checked; INVALID_ARGUMENT naming every problem."""
    values = {
        name: check(checks, f"{kind.field}.{name}", getattr(message, name))
        for name, check in kind.checks.items()
        if name in fields
    }
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


_KINDS = (_CLASSES, _AGENTS, _KNOWLEDGE)


def _kind_of(request: Message) -> _Kind:
    """The resource a catalog request is about, by the id or item field it has."""
    fields = request.DESCRIPTOR.fields_by_name
    (kind,) = [k for k in _KINDS if k.id_field in fields or k.field in fields]
    return kind


async def _item_scope(request: Any, *, writing: bool) -> None:
    """The request's item of the caller's organization (NOT_FOUND when there is none),
    once the RPC's permission is checked where it lives (organization-wide items: every
    user may read, writers need the organization permission)."""
    kind = _kind_of(request)
    item_id = getattr(request, kind.id_field)
    checks = Violations()
    checks.id(kind.id_field, item_id)
    checks.raise_if_any()
    call = auth.current()
    row = await practice_catalog.get(kind.model, call.principal.organization_id, item_id)
    if row is None:
        raise NotFound(f"{kind.what} {item_id} not found")
    call.found = row
    await authorize_scope(row.project_id, organization_checked=writing)


async def _read_scope(request: Any) -> None:
    """Lookup.CATALOG_ITEM_READ."""
    await _item_scope(request, writing=False)


async def _write_scope(request: Any) -> None:
    """Lookup.CATALOG_ITEM_WRITE."""
    await _item_scope(request, writing=True)


async def _new_item_scope(request: Any) -> None:
    """Lookup.NEW_CATALOG_ITEM: the new item's project (0: organization-wide)."""
    kind = _kind_of(request)
    checks = Violations()
    field = f"{kind.field}.project_id"
    scope = _check_project_id(checks, field, getattr(request, kind.field).project_id)
    checks.raise_if_any()
    await authorize_scope(scope, organization_checked=True)


async def _list_scope(request: Any) -> None:
    """Lookup.CATALOG_LIST: the list's project (0: the organization-wide items alone)."""
    checks = Violations()
    scope = _check_project_id(checks, "project_id", request.project_id)
    checks.raise_if_any()
    await authorize_scope(scope, organization_checked=False)


auth.register_lookup(Lookup.CATALOG_ITEM_READ, _read_scope)
auth.register_lookup(Lookup.CATALOG_ITEM_WRITE, _write_scope)
auth.register_lookup(Lookup.NEW_CATALOG_ITEM, _new_item_scope)
auth.register_lookup(Lookup.CATALOG_LIST, _list_scope)


async def _create(kind: _Kind, request: Any) -> Any:
    message = getattr(request, kind.field)
    checks = Violations()
    # The scope was checked by the rule's lookup (Lookup.NEW_CATALOG_ITEM).
    scope = message.project_id or None
    values, example_ids = _checked(kind, message, kind.fields, checks)
    await _check_examples_owned(kind, example_ids)
    row = await practice_catalog.create(
        kind.model, auth.current().principal.organization_id, scope, values, example_ids or ()
    )
    return (await kind.answers([row]))[0]


async def _get(kind: _Kind, request: Any) -> Any:
    return (await kind.answers([auth.found()]))[0]


async def _list(kind: _Kind, request: Any) -> Message:
    """A page of the organization-wide items, plus those of the request's project."""
    checks = Violations()
    scope = request.project_id or None  # checked by the rule's lookup (Lookup.CATALOG_LIST)
    page = pagination.page(request, checks, default=_PAGE_DEFAULT, maximum=_PAGE_MAX)
    checks.raise_if_any()
    rows = await practice_catalog.list_items(
        kind.model, auth.current().principal.organization_id, scope, page.after(), page.fetch
    )
    rows, token = page.finish(rows, lambda r: r.id)
    return kind.list_answer(**{kind.list_field: await kind.answers(rows)}, next_page_token=token)


async def _update(kind: _Kind, request: Any) -> Any:
    message = getattr(request, kind.field)
    checks = Violations()
    fields = fields_to_write(request.update_mask, message, kind.fields, checks)
    values, example_ids = _checked(kind, message, fields, checks)
    row = auth.found()
    await _check_examples_owned(kind, example_ids)
    return (await kind.answers([await practice_catalog.update(row, values, example_ids)]))[0]


async def _delete(kind: _Kind, request: Any) -> empty_pb2.Empty:
    await practice_catalog.delete(kind.model, auth.found().id)
    return empty_pb2.Empty()


def _rpcs(kind: _Kind) -> tuple[Callable[..., Awaitable[Any]], ...]:
    """A resource's Create, Get, List, Update and Delete, as servicer methods."""

    async def create(self: object, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _create(kind, request)

    async def get(self: object, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _get(kind, request)

    async def list_(self: object, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _list(kind, request)

    async def update(self: object, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _update(kind, request)

    async def delete(self: object, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _delete(kind, request)

    return create, get, list_, update, delete


class PracticeCatalogService(practice_pb2_grpc.PracticeCatalogServiceServicer):
    """Each resource's five RPCs, served by the one implementation above."""

    (
        CreatePracticeClass,
        GetPracticeClass,
        ListPracticeClasses,
        UpdatePracticeClass,
        DeletePracticeClass,
    ) = _rpcs(_CLASSES)
    (
        CreatePracticeAgent,
        GetPracticeAgent,
        ListPracticeAgents,
        UpdatePracticeAgent,
        DeletePracticeAgent,
    ) = _rpcs(_AGENTS)
    (
        CreateKnowledgeItem,
        GetKnowledgeItem,
        ListKnowledgeItems,
        UpdateKnowledgeItem,
        DeleteKnowledgeItem,
    ) = _rpcs(_KNOWLEDGE)
