"""Authentication and the permission table, through the real server."""

from __future__ import annotations

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.permissions import RULES, Scope
from corrigo.server.app import SERVICES
from corrigo.v1 import admin_pb2, admin_pb2_grpc
from corrigo.v1.admin_pb2 import Member, User
from tests.conftest import Org, Running


def test_every_service_method_has_a_permission_rule() -> None:
    methods = {
        f"/{entry.descriptor.full_name}/{method.name}"
        for entry in SERVICES
        for method in entry.descriptor.methods
    }
    assert methods - RULES.keys() == set()
    public = {name for name, rule in RULES.items() if rule.scope is Scope.PUBLIC}
    assert all(not name.startswith("/corrigo.") for name in public)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "TOKEN_MISSING"),
        ((("authorization", "Basic abc"),), "TOKEN_MALFORMED"),
        ((("authorization", "Bearer "),), "TOKEN_MALFORMED"),
        ((("authorization", "Bearer not-a-corrigo-token"),), "TOKEN_MALFORMED"),
        ((("authorization", "Bearer crg_x_secret"),), "TOKEN_MALFORMED"),
        ((("authorization", "Bearer crg_999999_secret"),), "TOKEN_INVALID"),
    ],
)
async def test_bad_tokens_are_unauthenticated(
    server: Running, org: Org, metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.WhoAmI(admin_pb2.WhoAmIRequest(), metadata=metadata)
    error = CorrigoError.from_rpc_error(err.value)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == reason
    for _, value in metadata:
        assert value.partition(" ")[2] not in error.message or not value.partition(" ")[2]


async def test_wrong_secret_of_a_real_token_id_is_unauthenticated(
    server: Running, org: Org
) -> None:
    token_id = org.admin_token.split("_")[1]
    async with AsyncClient(server.target, f"crg_{token_id}_wrongsecret") as client:
        with pytest.raises(CorrigoError) as err:
            await client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.reason == "TOKEN_INVALID"


@pytest.mark.parametrize("role", [Member.VIEWER, Member.ANNOTATOR, Member.EDITOR])
async def test_project_role_below_admin_cannot_manage_members(org: Org, role: int) -> None:
    project = await org.project()
    _, client = await org.member(project.id, role)
    target_id, _ = await org.user()
    with pytest.raises(CorrigoError) as err:
        await client.admin.SetMember(
            admin_pb2.SetMemberRequest(project_id=project.id, user_id=target_id, role=Member.VIEWER)
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.reason == "PERMISSION_MISSING"
    assert err.value.error_metadata == {"permission": "members_admin"}


async def test_project_admin_manages_members(org: Org) -> None:
    project = await org.project()
    _, client = await org.member(project.id, Member.ADMIN)
    target_id, _ = await org.user()
    member = await client.admin.SetMember(
        admin_pb2.SetMemberRequest(project_id=project.id, user_id=target_id, role=Member.VIEWER)
    )
    assert member.user_id == target_id


async def test_members_cannot_administer_the_organization(org: Org) -> None:
    for role in (User.MEMBER, User.SERVICE):
        _, client = await org.user(role)
        calls = [
            client.admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="nope"))
            ),
            client.admin.CreateUser(admin_pb2.CreateUserRequest(user=User(email="x@y.z"))),
            client.admin.ListUsers(admin_pb2.ListUsersRequest()),
            client.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=1)),
        ]
        for call in calls:
            with pytest.raises(CorrigoError) as err:
                await call
            assert err.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_non_member_is_denied_whether_or_not_the_project_exists(org: Org) -> None:
    project = await org.project()
    _, client = await org.user()
    for project_id in (project.id, 987654):
        with pytest.raises(CorrigoError) as err:
            await client.admin.GetProject(admin_pb2.GetProjectRequest(project_id=project_id))
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_members_see_only_their_projects(org: Org) -> None:
    mine = await org.project()
    await org.project()
    _, client = await org.member(mine.id, Member.VIEWER)
    listed = await client.admin.ListProjects(admin_pb2.ListProjectsRequest())
    assert [p.id for p in listed.projects] == [mine.id]
    got = await client.admin.GetProject(admin_pb2.GetProjectRequest(project_id=mine.id))
    assert got.name == mine.name


async def test_other_organizations_projects_are_never_visible(org: Org, other_org: Org) -> None:
    theirs = await other_org.project()
    listed = await org.admin.admin.ListProjects(admin_pb2.ListProjectsRequest())
    assert theirs.id not in [p.id for p in listed.projects]
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.GetProject(admin_pb2.GetProjectRequest(project_id=theirs.id))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=theirs.id))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    still = await other_org.admin.admin.GetProject(
        admin_pb2.GetProjectRequest(project_id=theirs.id)
    )
    assert still.id == theirs.id


async def test_other_organizations_tokens_are_not_found(org: Org, other_org: Org) -> None:
    theirs = await other_org.admin.admin.ListApiTokens(admin_pb2.ListApiTokensRequest())
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.RevokeApiToken(
            admin_pb2.RevokeApiTokenRequest(token_id=theirs.api_tokens[0].id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
