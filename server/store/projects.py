"""Projects and their memberships."""

from __future__ import annotations

import peewee

from corrigo.server.api.errors import AlreadyExists, FailedPrecondition, NotFound
from corrigo.server.store.database import BaseModel, atomic, database, utcnow
from corrigo.server.store.identity import Organization, User
from corrigo.server.store.integrity import Referenced, Refers, Unique


class Project(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    title = peewee.CharField(max_length=256, default="")
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organization", "name"), True),)


class Membership(BaseModel):
    project = peewee.ForeignKeyField(Project, on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    role = peewee.IntegerField()

    class Meta:
        primary_key = peewee.CompositeKey("project", "user")


async def create_project(org_id: int, name: str, title: str) -> Project:
    exists = AlreadyExists(f"project {name!r} already exists")
    async with atomic(Unique(Project, [Project.organization, Project.name], exists)):
        return await Project.acreate(organization=org_id, name=name, title=title)


async def find_by_id(org_id: int, project_id: int) -> Project | None:
    return await Project.aget_or_none(Project.id == project_id, Project.organization == org_id)


async def find_by_name(org_id: int, name: str) -> Project | None:
    return await Project.aget_or_none(Project.name == name, Project.organization == org_id)


async def list_projects(
    org_id: int, member_id: int | None, after_id: int, limit: int
) -> list[Project]:
    """The organization's projects, or only those `member_id` is a member of."""
    query = Project.select().where(Project.organization == org_id, Project.id > after_id)
    if member_id is not None:
        query = query.join(Membership).where(Membership.user == member_id)
    return await database.list(query.order_by(Project.id).limit(limit))


async def delete_project(project: Project) -> None:
    holds_data = FailedPrecondition(
        f"project {project.name!r} still holds data: delete its datasets and sources first"
    )
    async with atomic(Referenced(holds_data)):
        await database.aexecute(Membership.delete().where(Membership.project == project.id))
        await database.aexecute(Project.delete().where(Project.id == project.id))


async def role_in(project_id: int, user_id: int) -> int | None:
    return await database.scalar(
        Membership.select(Membership.role).where(
            Membership.project == project_id, Membership.user == user_id
        )
    )


async def set_member(project_id: int, user_id: int, role: int) -> None:
    async with atomic(
        Refers("project_id", "project", Project, [project_id]),
        Refers("user_id", "user", User, [user_id]),
    ):
        await database.aexecute(
            Membership.insert(project=project_id, user=user_id, role=role).on_conflict(
                conflict_target=[Membership.project, Membership.user],
                update={Membership.role: role},
            )
        )


async def remove_member(project_id: int, user_id: int) -> None:
    deleted = await database.aexecute(
        Membership.delete().where(Membership.project == project_id, Membership.user == user_id)
    )
    if not deleted:
        raise NotFound(f"user {user_id} is not a member of project {project_id}")


async def list_members(
    project_id: int, after_user_id: int, limit: int
) -> list[tuple[int, str, int]]:
    """(user_id, email, role) rows by ascending user id."""
    query = (
        Membership.select(Membership.user, User.email, Membership.role)
        .join(User)
        .where(Membership.project == project_id, Membership.user > after_user_id)
        .order_by(Membership.user)
        .limit(limit)
        .tuples()
    )
    return await database.list(query)


async def memberships_of(user_id: int) -> list[tuple[int, int]]:
    """(project_id, role) of every membership of a user."""
    query = (
        Membership.select(Membership.project, Membership.role)
        .where(Membership.user == user_id)
        .order_by(Membership.project)
        .tuples()
    )
    return await database.list(query)
