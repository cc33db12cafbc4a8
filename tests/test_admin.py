"""AdminService through the real server: projects, members, users, tokens."""

from __future__ import annotations

import grpc
import pytest

from corrigo.client import CorrigoError
from corrigo.v1 import admin_pb2
from corrigo.v1.admin_pb2 import Member, User
from tests.conftest import Org


async def test_whoami_answers_user_org_and_memberships(org: Org) -> None:
    project = await org.project()
    user_id, client = await org.member(project.id, Member.EDITOR)
    answer = await client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    assert answer.user.id == user_id
    assert answer.user.role == User.MEMBER
    assert answer.organization.name == org.name
    assert [(m.project_id, m.role) for m in answer.memberships] == [(project.id, Member.EDITOR)]
    assert answer.token_id > 0


async def test_create_get_list_delete_project(org: Org) -> None:
    created = await org.admin.admin.CreateProject(
        admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="alpha", title="Alpha"))
    )
    assert created.id > 0 and created.name == "alpha" and created.title == "Alpha"
    assert created.created_at.seconds > 0
    got = await org.admin.admin.GetProject(admin_pb2.GetProjectRequest(project_id=created.id))
    assert got == created
    listed = await org.admin.admin.ListProjects(admin_pb2.ListProjectsRequest())
    assert [p.name for p in listed.projects] == ["alpha"]
    assert listed.next_page_token == ""
    await org.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=created.id))
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.GetProject(admin_pb2.GetProjectRequest(project_id=created.id))
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_duplicate_project_name_is_already_exists(org: Org) -> None:
    await org.project("twice")
    with pytest.raises(CorrigoError) as err:
        await org.project("twice")
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert err.value.reason == "RESOURCE_EXISTS"


async def test_delete_missing_project_is_not_found(org: Org) -> None:
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=999999))
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_list_projects_pages_with_tokens(org: Org) -> None:
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        await org.project(name)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await org.admin.admin.ListProjects(
            admin_pb2.ListProjectsRequest(page_size=2, page_token=token)
        )
        seen.extend(p.name for p in page.projects)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == names
    assert pages == 3


async def test_page_token_tampered_or_foreign_is_invalid(org: Org) -> None:
    for i in range(3):
        await org.project(f"t-{i}")
    first = await org.admin.admin.ListProjects(admin_pb2.ListProjectsRequest(page_size=1))
    token = first.next_page_token
    assert token
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for bad in [tampered, "not-a-token", "%%%"]:
        with pytest.raises(CorrigoError) as err:
            await org.admin.admin.ListProjects(
                admin_pb2.ListProjectsRequest(page_size=1, page_token=bad)
            )
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.fields == ["page_token"]
        assert err.value.reason == "PAGE_TOKEN_INVALID"
    # A token of one list replayed against another list is refused.
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.ListUsers(admin_pb2.ListUsersRequest(page_size=1, page_token=token))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["page_token"]


async def test_members_set_list_remove(org: Org) -> None:
    project = await org.project()
    user_id, _ = await org.user()
    member = await org.admin.admin.SetMember(
        admin_pb2.SetMemberRequest(project_id=project.id, user_id=user_id, role=Member.VIEWER)
    )
    assert member.role == Member.VIEWER and member.email.endswith(".test")
    await org.admin.admin.SetMember(
        admin_pb2.SetMemberRequest(project_id=project.id, user_id=user_id, role=Member.ADMIN)
    )
    listed = await org.admin.admin.ListMembers(admin_pb2.ListMembersRequest(project_id=project.id))
    assert [(m.user_id, m.role) for m in listed.members] == [(user_id, Member.ADMIN)]
    await org.admin.admin.RemoveMember(
        admin_pb2.RemoveMemberRequest(project_id=project.id, user_id=user_id)
    )
    listed = await org.admin.admin.ListMembers(admin_pb2.ListMembersRequest(project_id=project.id))
    assert list(listed.members) == []
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.RemoveMember(
            admin_pb2.RemoveMemberRequest(project_id=project.id, user_id=user_id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_set_member_of_other_org_user_is_not_found(org: Org, other_org: Org) -> None:
    project = await org.project()
    stranger_id, _ = await other_org.user()
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.SetMember(
            admin_pb2.SetMemberRequest(
                project_id=project.id, user_id=stranger_id, role=Member.VIEWER
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_users_create_and_list(org: Org) -> None:
    user = await org.admin.admin.CreateUser(
        admin_pb2.CreateUserRequest(
            user=User(email=f"svc@{org.name}.test", role=User.SERVICE, display_name="Pipeline")
        )
    )
    assert user.role == User.SERVICE and user.display_name == "Pipeline"
    plain = await org.admin.admin.CreateUser(
        admin_pb2.CreateUserRequest(user=User(email=f"plain@{org.name}.test"))
    )
    assert plain.role == User.MEMBER
    listed = await org.admin.admin.ListUsers(admin_pb2.ListUsersRequest())
    assert [u.email for u in listed.users] == [
        f"admin@{org.name}.test",
        f"svc@{org.name}.test",
        f"plain@{org.name}.test",
    ]
    with pytest.raises(CorrigoError) as err:
        await org.admin.admin.CreateUser(
            admin_pb2.CreateUserRequest(user=User(email=f"svc@{org.name}.test"))
        )
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS


async def test_tokens_create_list_revoke(org: Org) -> None:
    user_id, client = await org.user()
    own = await client.admin.CreateApiToken(admin_pb2.CreateApiTokenRequest(description="ci"))
    assert own.token.startswith(f"crg_{own.api_token.id}_")
    assert own.api_token.user_id == user_id
    listed = await client.admin.ListApiTokens(admin_pb2.ListApiTokensRequest())
    assert [t.description for t in listed.api_tokens] == ["test", "ci"]
    assert all(not t.HasField("revoked_at") for t in listed.api_tokens)
    revoked = await client.admin.RevokeApiToken(
        admin_pb2.RevokeApiTokenRequest(token_id=own.api_token.id)
    )
    assert revoked.HasField("revoked_at")
    again = await client.admin.RevokeApiToken(
        admin_pb2.RevokeApiTokenRequest(token_id=own.api_token.id)
    )
    assert again.revoked_at == revoked.revoked_at
    revoked_client = org.client(own.token)
    with pytest.raises(CorrigoError) as err:
        await revoked_client.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.reason == "TOKEN_REVOKED"


async def test_admin_manages_other_users_tokens_members_cannot(org: Org) -> None:
    user_id, client = await org.user()
    other_id, _ = await org.user()
    made = await org.admin.admin.CreateApiToken(
        admin_pb2.CreateApiTokenRequest(user_id=user_id, description="by admin")
    )
    assert made.api_token.user_id == user_id
    for call in [
        client.admin.CreateApiToken(admin_pb2.CreateApiTokenRequest(user_id=other_id)),
        client.admin.ListApiTokens(admin_pb2.ListApiTokensRequest(user_id=other_id)),
    ]:
        with pytest.raises(CorrigoError) as err:
            await call
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Another user's token is invisible to a member.
    others = await org.admin.admin.ListApiTokens(admin_pb2.ListApiTokensRequest(user_id=other_id))
    with pytest.raises(CorrigoError) as err:
        await client.admin.RevokeApiToken(
            admin_pb2.RevokeApiTokenRequest(token_id=others.api_tokens[0].id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("CreateProject", admin_pb2.CreateProjectRequest(), "project.name"),
        (
            "CreateProject",
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="has space")),
            "project.name",
        ),
        (
            "CreateProject",
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="x" * 65)),
            "project.name",
        ),
        (
            "CreateProject",
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(name="ok", title="t" * 257)),
            "project.title",
        ),
        ("GetProject", admin_pb2.GetProjectRequest(project_id=0), "project_id"),
        ("GetProject", admin_pb2.GetProjectRequest(project_id=-4), "project_id"),
        ("ListProjects", admin_pb2.ListProjectsRequest(page_size=-1), "page_size"),
        ("ListProjects", admin_pb2.ListProjectsRequest(page_size=1001), "page_size"),
        ("ListProjects", admin_pb2.ListProjectsRequest(page_token="garbage"), "page_token"),
        ("DeleteProject", admin_pb2.DeleteProjectRequest(), "project_id"),
        ("SetMember", admin_pb2.SetMemberRequest(project_id=0, user_id=1, role=1), "project_id"),
        ("SetMember", admin_pb2.SetMemberRequest(project_id=1, user_id=0, role=1), "user_id"),
        ("SetMember", admin_pb2.SetMemberRequest(project_id=1, user_id=1, role=0), "role"),
        ("SetMember", admin_pb2.SetMemberRequest(project_id=1, user_id=1, role=99), "role"),
        ("ListMembers", admin_pb2.ListMembersRequest(project_id=0), "project_id"),
        ("RemoveMember", admin_pb2.RemoveMemberRequest(project_id=1, user_id=0), "user_id"),
        ("CreateUser", admin_pb2.CreateUserRequest(), "user.email"),
        ("CreateUser", admin_pb2.CreateUserRequest(user=User(email="no-at-sign")), "user.email"),
        (
            "CreateUser",
            admin_pb2.CreateUserRequest(user=User(email=f"{'a' * 250}@x.io")),
            "user.email",
        ),
        ("CreateUser", admin_pb2.CreateUserRequest(user=User(email="a@b.c", role=7)), "user.role"),
        (
            "CreateUser",
            admin_pb2.CreateUserRequest(user=User(email="a@b.c", display_name="d" * 201)),
            "user.display_name",
        ),
        ("ListUsers", admin_pb2.ListUsersRequest(page_size=5000), "page_size"),
        ("CreateApiToken", admin_pb2.CreateApiTokenRequest(description="d" * 201), "description"),
        ("CreateApiToken", admin_pb2.CreateApiTokenRequest(user_id=-1), "user_id"),
        ("ListApiTokens", admin_pb2.ListApiTokensRequest(page_size=-3), "page_size"),
        ("RevokeApiToken", admin_pb2.RevokeApiTokenRequest(), "token_id"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    org: Org, method: str, request_: object, field: str
) -> None:
    if hasattr(request_, "project_id") and request_.project_id == 1:  # type: ignore[attr-defined]
        project = await org.project()
        request_.project_id = project.id  # type: ignore[attr-defined]
    with pytest.raises(CorrigoError) as err:
        await getattr(org.admin.admin, method)(request_)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, err.value.message
    assert field in err.value.fields
    assert err.value.reason in ("INVALID_REQUEST", "PAGE_TOKEN_INVALID")
