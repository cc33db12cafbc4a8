"""Document groups: saved sets of a project's documents that correction sessions sample
from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import peewee

from corrigo.server.store.database import BaseModel, atomic, database, utcnow
from corrigo.server.store.identity import User
from corrigo.server.store.integrity import Refers
from corrigo.server.store.projects import Project
from corrigo.server.store.sources import Comment, Source


class DocumentGroup(BaseModel):
    id = peewee.AutoField()
    project = peewee.ForeignKeyField(Project)
    user = peewee.ForeignKeyField(User)
    name = peewee.CharField(max_length=256)
    created = peewee.DateTimeField(default=utcnow)


class DocumentGroupMember(BaseModel):
    group = peewee.ForeignKeyField(DocumentGroup, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")
    # Keeps the documents in the order they were given.
    position = peewee.IntegerField()

    class Meta:
        primary_key = peewee.CompositeKey("group", "comment")


@dataclass(frozen=True)
class GroupView:
    row: DocumentGroup
    document_count: int


async def create(project_id: int, user_id: int, name: str, comment_ids: Sequence[int]) -> GroupView:
    async with atomic(
        Refers("project_id", "project", Project, [project_id]),
        Refers("document_uids", "document", Comment, comment_ids, shown=False),
    ):
        row: DocumentGroup = await DocumentGroup.acreate(
            project=project_id, user=user_id, name=name, created=utcnow()
        )
        await database.aexecute(
            DocumentGroupMember.insert_many(
                [
                    {"group": row.id, "comment": comment_id, "position": i}
                    for i, comment_id in enumerate(comment_ids)
                ]
            )
        )
    return GroupView(row, len(comment_ids))


async def find(project_id: int, group_id: int) -> DocumentGroup | None:
    row: DocumentGroup | None = await DocumentGroup.aget_or_none(
        DocumentGroup.id == group_id, DocumentGroup.project == project_id
    )
    return row


def members(group_id: int) -> peewee.Select:
    """A query of the group's comment ids."""
    return DocumentGroupMember.select(DocumentGroupMember.comment).where(
        DocumentGroupMember.group == group_id
    )


async def _counts(group_ids: Sequence[int]) -> dict[int, int]:
    if not group_ids:
        return {}
    rows = await database.list(
        DocumentGroupMember.select(
            DocumentGroupMember.group, peewee.fn.COUNT(DocumentGroupMember.comment)
        )
        .join(Comment, on=(DocumentGroupMember.comment == Comment.id))
        .join(Source, on=(Comment.source == Source.id))
        .where(DocumentGroupMember.group.in_(list(group_ids)), *Source.present())
        .group_by(DocumentGroupMember.group)
        .tuples()
    )
    return dict(rows)


async def view(row: DocumentGroup) -> GroupView:
    counts = await _counts([row.id])
    return GroupView(row, counts.get(row.id, 0))


async def uids(group_id: int) -> list[str]:
    """The group's documents' uids, in their order."""
    rows = await database.list(
        DocumentGroupMember.select(Source.hex_id, Comment.comment_id)
        .join(Comment, on=(DocumentGroupMember.comment == Comment.id))
        .join(Source, on=(Comment.source == Source.id))
        .where(DocumentGroupMember.group == group_id, *Source.present())
        .order_by(DocumentGroupMember.position)
        .tuples()
    )
    return [f"{source_hex}.{comment_id}" for source_hex, comment_id in rows]


async def list_groups(project_id: int, after_id: int, limit: int) -> list[GroupView]:
    rows = await database.list(
        DocumentGroup.select()
        .where(DocumentGroup.project == project_id, DocumentGroup.id > after_id)
        .order_by(DocumentGroup.id)
        .limit(limit)
    )
    counts = await _counts([r.id for r in rows])
    return [GroupView(r, counts.get(r.id, 0)) for r in rows]


async def delete(row: DocumentGroup) -> None:
    async with atomic():
        await database.aexecute(DocumentGroup.delete().where(DocumentGroup.id == row.id))
