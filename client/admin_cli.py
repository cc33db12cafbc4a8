"""`corrigo projects | users | members | tokens ...`: the organization's administration.

Projects may be named by id or name, users by id or email; tables by default, `--json`
for scripts.
"""

from __future__ import annotations

import argparse

from corrigo.client import Client
from corrigo.client.cli_support import (
    Column,
    Commands,
    command,
    connect,
    done,
    every,
    group,
    print_item,
    print_items,
    when,
)
from corrigo.client.errors import UsageError
from corrigo.v1 import admin_pb2

_USER_ROLES = [v.name.lower() for v in admin_pb2.User.Role.DESCRIPTOR.values if v.number]
_MEMBER_ROLES = [v.name.lower() for v in admin_pb2.Member.Role.DESCRIPTOR.values if v.number]

PROJECT_COLUMNS: list[Column] = [
    ("ID", lambda p: p.id),
    ("NAME", lambda p: p.name),
    ("TITLE", lambda p: p.title),
    ("CREATED", lambda p: when(p, "created_at")),
]
USER_COLUMNS: list[Column] = [
    ("ID", lambda u: u.id),
    ("EMAIL", lambda u: u.email),
    ("ROLE", lambda u: admin_pb2.User.Role.Name(u.role)),
    ("NAME", lambda u: u.display_name),
    ("CREATED", lambda u: when(u, "created_at")),
]
MEMBER_COLUMNS: list[Column] = [
    ("PROJECT", lambda m: m.project_id),
    ("USER", lambda m: m.user_id),
    ("EMAIL", lambda m: m.email),
    ("ROLE", lambda m: admin_pb2.Member.Role.Name(m.role)),
]
TOKEN_COLUMNS: list[Column] = [
    ("ID", lambda t: t.id),
    ("USER", lambda t: t.user_id),
    ("DESCRIPTION", lambda t: t.description),
    ("CREATED", lambda t: when(t, "created_at")),
    ("LAST USED", lambda t: when(t, "last_used_at")),
    ("REVOKED", lambda t: when(t, "revoked_at")),
]


def project_id(client: Client, project: str) -> int:
    """The id of a project named by id or name."""
    if project.isdigit():
        return int(project)
    for found in every(client.admin.ListProjects, admin_pb2.ListProjectsRequest(), "projects"):
        if found.name == project:
            return int(found.id)
    raise UsageError(f"no project {project!r} among yours; `corrigo projects list` shows them")


def _user(client: Client, user: str) -> admin_pb2.User:
    """A user named by id or email (listing users needs an organization admin)."""
    for found in every(client.admin.ListUsers, admin_pb2.ListUsersRequest(), "users"):
        if str(found.id) == user or found.email == user:
            return found
    raise UsageError(f"no user {user!r} in the organization; `corrigo users list` shows them")


def _user_id(client: Client, user: str) -> int:
    return int(user) if user.isdigit() else int(_user(client, user).id)


def _projects_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = every(client.admin.ListProjects, admin_pb2.ListProjectsRequest(), "projects")
    print_items(args, found, PROJECT_COLUMNS)
    return 0


def _projects_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        project = client.admin.GetProject(
            admin_pb2.GetProjectRequest(project_id=project_id(client, args.project))
        )
    print_item(args, project, PROJECT_COLUMNS)
    return 0


def _projects_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        project = client.admin.CreateProject(
            admin_pb2.CreateProjectRequest(
                project=admin_pb2.Project(name=args.name, title=args.title)
            )
        )
    print_item(args, project, PROJECT_COLUMNS)
    return 0


def _projects_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        chosen = project_id(client, args.project)
        client.admin.DeleteProject(admin_pb2.DeleteProjectRequest(project_id=chosen))
    done(f"project {args.project} deleted")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = every(client.admin.ListUsers, admin_pb2.ListUsersRequest(), "users")
    print_items(args, found, USER_COLUMNS)
    return 0


def _users_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        print_item(args, _user(client, args.user), USER_COLUMNS)
    return 0


def _users_create(args: argparse.Namespace) -> int:
    user = admin_pb2.User(
        email=args.email,
        role=admin_pb2.User.Role.Value(args.role.upper()),
        display_name=args.display_name,
    )
    with connect(args) as client:
        created = client.admin.CreateUser(admin_pb2.CreateUserRequest(user=user))
    print_item(args, created, USER_COLUMNS)
    return 0


def _members_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        request = admin_pb2.ListMembersRequest(project_id=project_id(client, args.project))
        found = every(client.admin.ListMembers, request, "members")
    print_items(args, found, MEMBER_COLUMNS)
    return 0


def _members_set(args: argparse.Namespace) -> int:
    with connect(args) as client:
        member = client.admin.SetMember(
            admin_pb2.SetMemberRequest(
                project_id=project_id(client, args.project),
                user_id=_user_id(client, args.user),
                role=admin_pb2.Member.Role.Value(args.role.upper()),
            )
        )
    print_item(args, member, MEMBER_COLUMNS)
    return 0


def _members_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.admin.RemoveMember(
            admin_pb2.RemoveMemberRequest(
                project_id=project_id(client, args.project), user_id=_user_id(client, args.user)
            )
        )
    done(f"{args.user} is no longer a member of project {args.project}")
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        user_id = _user_id(client, args.user) if args.user else 0
        request = admin_pb2.ListApiTokensRequest(user_id=user_id)
        found = every(client.admin.ListApiTokens, request, "api_tokens")
    print_items(args, found, TOKEN_COLUMNS)
    return 0


def _tokens_create(args: argparse.Namespace) -> int:
    """The new token alone on stdout (it is shown once), as `admin bootstrap` prints it."""
    with connect(args) as client:
        user_id = _user_id(client, args.user) if args.user else 0
        answer = client.admin.CreateApiToken(
            admin_pb2.CreateApiTokenRequest(user_id=user_id, description=args.description)
        )
    if args.json:
        print_item(args, answer, [])
        return 0
    print(answer.token)
    done(f"token {answer.api_token.id} of user {answer.api_token.user_id}; it is shown once")
    return 0


def _tokens_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        token = client.admin.RevokeApiToken(admin_pb2.RevokeApiTokenRequest(token_id=args.token_id))
    print_item(args, token, TOKEN_COLUMNS)
    return 0


def add_commands(commands: Commands) -> None:
    projects = group(commands, "projects", "the organization's projects")
    command(projects, "list", "list the projects you can see", _projects_list)
    show = command(projects, "show", "show a project", _projects_show)
    show.add_argument("project", help="project id or name")
    create = command(projects, "create", "create a project (organization admin)", _projects_create)
    create.add_argument("name", help="1..64 letters, digits, '-', '_' or '.'")
    create.add_argument("--title", default="", help="a title for people")
    delete = command(projects, "delete", "delete a project and all it holds", _projects_delete)
    delete.add_argument("project", help="project id or name")

    users = group(commands, "users", "the organization's users (organization admin)")
    command(users, "list", "list the users", _users_list)
    show = command(users, "show", "show a user", _users_show)
    show.add_argument("user", help="user id or email")
    create = command(users, "create", "create a user", _users_create)
    create.add_argument("email")
    create.add_argument("--role", choices=_USER_ROLES, default="member", help="default member")
    create.add_argument("--display-name", default="")

    members = group(commands, "members", "who may do what in a project")
    listing = command(members, "list", "list a project's members", _members_list)
    listing.add_argument("project", help="project id or name")
    create = command(members, "create", "make a user a member, or change their role", _members_set)
    create.add_argument("project", help="project id or name")
    create.add_argument("user", help="user id or email")
    create.add_argument("role", choices=_MEMBER_ROLES)
    delete = command(members, "delete", "remove a user from a project", _members_delete)
    delete.add_argument("project", help="project id or name")
    delete.add_argument("user", help="user id or email")

    tokens = group(commands, "tokens", "API tokens")
    listing = command(tokens, "list", "list tokens (yours, or --user's)", _tokens_list)
    listing.add_argument("--user", help="user id or email (organization admin)")
    create = command(
        tokens, "create", "create a token, printed alone on stdout (shown once)", _tokens_create
    )
    create.add_argument("--user", help="for this user id or email (default: you)")
    create.add_argument("--description", default="", help="what the token is for")
    delete = command(tokens, "delete", "revoke a token", _tokens_delete)
    delete.add_argument("token_id", type=int)
