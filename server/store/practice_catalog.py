"""The practice catalog: classes, agents (with their default few-shot examples) and
knowledge items. Each belongs to an organization and optionally to one of its projects
(`project` null = organization-wide)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any, TypeAlias, TypeVar

import peewee

from corrigo.server.store.database import BaseModel, atomic, database, retried, utcnow
from corrigo.server.store.few_shot import FewShotExample
from corrigo.server.store.fields import JSONField
from corrigo.server.store.identity import Organization
from corrigo.server.store.integrity import Refers, written
from corrigo.server.store.projects import Project


class PracticeClass(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    project = peewee.ForeignKeyField(Project, null=True)
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    model_names = JSONField(default=list)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class PracticeAgent(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    project = peewee.ForeignKeyField(Project, null=True)
    name = peewee.CharField(max_length=200)
    instructions = peewee.TextField(default="")
    style_preset = peewee.CharField(max_length=64)
    style_params = JSONField(default=dict)
    generation_params = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class PracticeAgentExample(BaseModel):
    """An agent's default few-shot example, in `sort_order`."""

    id = peewee.AutoField()
    agent = peewee.ForeignKeyField(PracticeAgent, on_delete="CASCADE")
    example = peewee.ForeignKeyField(FewShotExample, on_delete="CASCADE")
    sort_order = peewee.IntegerField()

    class Meta:
        indexes = ((("agent", "example"), True),)


class KnowledgeItem(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    project = peewee.ForeignKeyField(Project, null=True)
    title = peewee.CharField(max_length=200)
    content = peewee.TextField(default="")
    meta = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


# How requests name each kind of item: the message field, the id field, and in answers.
_FIELDS = {PracticeClass: "practice_class", PracticeAgent: "agent", KnowledgeItem: "knowledge_item"}
_ID_FIELDS = {PracticeClass: "class_id", PracticeAgent: "agent_id", KnowledgeItem: "knowledge_id"}
_NOUNS = {PracticeClass: "practice class", PracticeAgent: "agent", KnowledgeItem: "knowledge item"}

CatalogModel: TypeAlias = type[PracticeClass] | type[PracticeAgent] | type[KnowledgeItem]
Item = TypeVar("Item", PracticeClass, PracticeAgent, KnowledgeItem)


async def create(
    model: type[Item],
    org_id: int,
    project_id: int | None,
    values: dict[str, Any],
    example_ids: Sequence[int] = (),
) -> Item:
    """A new item; an agent's default examples (`example_ids`) in the same transaction."""
    now = utcnow()
    async with atomic(
        Refers(
            f"{_FIELDS[model]}.project_id",
            "project",
            Project,
            [] if project_id is None else [project_id],
        ),
        Refers(
            f"{_FIELDS[model]}.few_shot_example_ids",
            "few-shot example",
            FewShotExample,
            example_ids,
        ),
    ):
        row: Item = await model.acreate(
            organization=org_id, project=project_id, created_at=now, updated_at=now, **values
        )
        await _link_examples(row.id, example_ids)
    return row


async def get(model: type[Item], org_id: int, item_id: int) -> Item | None:
    row: Item | None = await model.aget_or_none(model.id == item_id, model.organization == org_id)
    return row


async def get_many(model: type[Item], org_id: int, item_ids: Collection[int]) -> dict[int, Item]:
    if not item_ids:
        return {}
    query = model.select().where(model.organization == org_id, model.id.in_(list(item_ids)))
    return {row.id: row for row in await database.list(query)}


async def list_items(
    model: type[Item], org_id: int, project_id: int | None, after_id: int, limit: int
) -> list[Item]:
    """Organization-wide items, plus those of `project_id` when given, by ascending id."""
    scope = model.project.is_null()
    if project_id is not None:
        scope = scope | (model.project == project_id)
    query = (
        model.select()
        .where(model.organization == org_id, scope, model.id > after_id)
        .order_by(model.id)
        .limit(limit)
    )
    return await database.list(query)


async def update(
    row: Item, values: dict[str, Any], example_ids: Sequence[int] | None = None
) -> Item:
    """Write `values` and, unless None, replace an agent's default examples, in one
    transaction."""
    model = type(row)
    values["updated_at"] = utcnow()

    async def write() -> None:
        async with atomic(
            Refers(_ID_FIELDS[model], _NOUNS[model], model, [row.id]),
            Refers(
                f"{_FIELDS[model]}.few_shot_example_ids",
                "few-shot example",
                FewShotExample,
                example_ids or (),
            ),
        ):
            written(
                await database.aexecute(model.update(**values).where(model.id == row.id)), model
            )
            if example_ids is not None:
                await database.aexecute(
                    PracticeAgentExample.delete().where(PracticeAgentExample.agent == row.id)
                )
                await _link_examples(row.id, example_ids)

    # Replacing the links can deadlock with an example's delete (PostgreSQL).
    await retried(write)
    for name, value in values.items():
        setattr(row, name, value)
    return row


async def delete(model: CatalogModel, item_id: int) -> None:
    await retried(lambda: database.aexecute(model.delete().where(model.id == item_id)))


async def _link_examples(agent_id: int, example_ids: Sequence[int]) -> None:
    if example_ids:
        rows = [
            {"agent": agent_id, "example": example_id, "sort_order": order}
            for order, example_id in enumerate(example_ids)
        ]
        await database.aexecute(PracticeAgentExample.insert_many(rows))


async def agent_example_ids(
    agent_ids: Collection[int], *, active_only: bool = False
) -> dict[int, list[int]]:
    """Each agent's default example ids in order, in one query."""
    if not agent_ids:
        return {}
    query = (
        PracticeAgentExample.select(PracticeAgentExample.agent, PracticeAgentExample.example)
        .where(PracticeAgentExample.agent.in_(list(agent_ids)))
        .order_by(PracticeAgentExample.agent, PracticeAgentExample.sort_order)
    )
    if active_only:
        query = query.join(FewShotExample).where(FewShotExample.is_active == True)  # noqa: E712
    found: dict[int, list[int]] = defaultdict(list)
    for agent_id, example_id in await database.list(query.tuples()):
        found[agent_id].append(example_id)
    return found
