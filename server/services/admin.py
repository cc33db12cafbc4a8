"""AdminService: projects, members, users and API tokens of an organization."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from corrigo.server.api import auth, pagination
from corrigo.server.api.errors import NotFound, PermissionDenied
from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import Violations
from corrigo.server.store import identity, projects
from corrigo.v1 import admin_pb2, admin_pb2_grpc
from corrigo.v1.admin_pb2 import Member, User

_PAGE_DEFAULT = 100
_PAGE_MAX = 1000


def user_proto(row: identity.User) -> User:
    return User(
        id=row.id,
        email=row.email,
        role=User.Role.ValueType(row.role),
        display_name=row.display_name,
        created_at=to_proto(row.created_at),
    )


def project_proto(row: projects.Project) -> admin_pb2.Project:
    return admin_pb2.Project(
        id=row.id, name=row.name, title=row.title, created_at=to_proto(row.created_at)
    )


def token_proto(row: identity.ApiToken) -> admin_pb2.ApiToken:
    return admin_pb2.ApiToken(
        id=row.id,
        user_id=row.user_id,
        description=row.description,
        created_at=to_proto(row.created_at),
        revoked_at=to_proto(row.revoked_at),
        last_used_at=to_proto(row.last_used_at),
    )


def _role_names(enum: type[Member] | type[User]) -> dict[int, str]:
    return {v.number: v.name for v in enum.DESCRIPTOR.enum_types_by_name["Role"].values if v.number}


_MEMBER_ROLES = _role_names(Member)
_USER_ROLES = _role_names(User)


def _user_for(request_user_id: int, checks: Violations) -> int:
    """Whose tokens a call is about: the caller, or (organization admins only) another user."""
    checks.id("user_id", request_user_id, optional=True)
    checks.raise_if_any()
    call = auth.current()
    if request_user_id in (0, call.principal.user_id):
        return call.principal.user_id
    if not call.is_org_admin:
        raise PermissionDenied(
            "permission 'org_admin' required to manage another user's tokens",
            metadata={"permission": "org_admin"},
        )
    return request_user_id


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    async def WhoAmI(
        self, request: admin_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.WhoAmIResponse:
        principal = auth.current().principal
        user = await identity.get_user(principal.organization_id, principal.user_id)
        org = await identity.get_organization(principal.organization_id)
        memberships = await projects.memberships_of(principal.user_id)
        return admin_pb2.WhoAmIResponse(
            user=user_proto(user),
            organization=admin_pb2.Organization(
                id=org.id, name=org.name, created_at=to_proto(org.created_at)
            ),
            memberships=[
                Member(
                    project_id=p,
                    user_id=user.id,
                    email=user.email,
                    role=Member.Role.ValueType(role),
                )
                for p, role in memberships
            ],
            token_id=principal.token_id,
        )

    async def CreateProject(
        self, request: admin_pb2.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Project:
        checks = Violations()
        checks.name("project.name", request.project.name)
        checks.text("project.title", request.project.title, 256)
        checks.raise_if_any()
        row = await projects.create_project(
            auth.current().principal.organization_id, request.project.name, request.project.title
        )
        return project_proto(row)

    async def GetProject(
        self, request: admin_pb2.GetProjectRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Project:
        return project_proto(auth.project())

    async def ListProjects(
        self, request: admin_pb2.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListProjectsResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=_PAGE_DEFAULT, maximum=_PAGE_MAX)
        checks.raise_if_any()
        call = auth.current()
        rows = await projects.list_projects(
            call.principal.organization_id,
            None if call.is_org_admin else call.principal.user_id,
            page.after(),
            page.fetch,
        )
        rows, token = page.finish(rows, lambda r: r.id)
        return admin_pb2.ListProjectsResponse(
            projects=[project_proto(r) for r in rows], next_page_token=token
        )

    async def DeleteProject(
        self, request: admin_pb2.DeleteProjectRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        checks = Violations()
        checks.id("project_id", request.project_id)
        checks.raise_if_any()
        row = await projects.find_by_id(
            auth.current().principal.organization_id, request.project_id
        )
        if row is None:
            raise NotFound(f"project {request.project_id} not found")
        await projects.delete_project(row)
        return empty_pb2.Empty()

    async def SetMember(
        self, request: admin_pb2.SetMemberRequest, context: grpc.aio.ServicerContext
    ) -> Member:
        checks = Violations()
        checks.id("user_id", request.user_id)
        checks.enum("role", request.role, _MEMBER_ROLES)
        checks.raise_if_any()
        project = auth.project()
        user = await identity.get_user(project.organization_id, request.user_id)
        await projects.set_member(project.id, user.id, request.role)
        return Member(project_id=project.id, user_id=user.id, email=user.email, role=request.role)

    async def ListMembers(
        self, request: admin_pb2.ListMembersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListMembersResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=_PAGE_DEFAULT, maximum=_PAGE_MAX)
        checks.raise_if_any()
        project = auth.project()
        rows = await projects.list_members(project.id, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r[0])
        return admin_pb2.ListMembersResponse(
            members=[
                Member(
                    project_id=project.id,
                    user_id=user_id,
                    email=email,
                    role=Member.Role.ValueType(role),
                )
                for user_id, email, role in rows
            ],
            next_page_token=token,
        )

    async def RemoveMember(
        self, request: admin_pb2.RemoveMemberRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        checks = Violations()
        checks.id("user_id", request.user_id)
        checks.raise_if_any()
        await projects.remove_member(auth.project().id, request.user_id)
        return empty_pb2.Empty()

    async def CreateUser(
        self, request: admin_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> User:
        checks = Violations()
        checks.email("user.email", request.user.email)
        if request.user.role:
            checks.enum("user.role", request.user.role, _USER_ROLES)
        checks.text("user.display_name", request.user.display_name, 200)
        checks.raise_if_any()
        row = await identity.create_user(
            auth.current().principal.organization_id,
            request.user.email,
            request.user.role or User.MEMBER,
            request.user.display_name,
        )
        return user_proto(row)

    async def ListUsers(
        self, request: admin_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListUsersResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=_PAGE_DEFAULT, maximum=_PAGE_MAX)
        checks.raise_if_any()
        rows = await identity.list_users(
            auth.current().principal.organization_id, page.after(), page.fetch
        )
        rows, token = page.finish(rows, lambda r: r.id)
        return admin_pb2.ListUsersResponse(
            users=[user_proto(r) for r in rows], next_page_token=token
        )

    async def CreateApiToken(
        self, request: admin_pb2.CreateApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateApiTokenResponse:
        checks = Violations()
        checks.text("description", request.description, 200)
        user_id = _user_for(request.user_id, checks)
        user = await identity.get_user(auth.current().principal.organization_id, user_id)
        row, token = await identity.create_token(user.id, request.description)
        return admin_pb2.CreateApiTokenResponse(api_token=token_proto(row), token=token)

    async def ListApiTokens(
        self, request: admin_pb2.ListApiTokensRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListApiTokensResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=_PAGE_DEFAULT, maximum=_PAGE_MAX)
        user_id = _user_for(request.user_id, checks)
        user = await identity.get_user(auth.current().principal.organization_id, user_id)
        rows = await identity.list_tokens(user.id, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r.id)
        return admin_pb2.ListApiTokensResponse(
            api_tokens=[token_proto(r) for r in rows], next_page_token=token
        )

    async def RevokeApiToken(
        self, request: admin_pb2.RevokeApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ApiToken:
        checks = Violations()
        checks.id("token_id", request.token_id)
        checks.raise_if_any()
        call = auth.current()
        row = await identity.get_token(call.principal.organization_id, request.token_id)
        if row.user_id != call.principal.user_id and not call.is_org_admin:
            raise NotFound(f"API token {request.token_id} not found")
        return token_proto(await identity.revoke_token(row))
