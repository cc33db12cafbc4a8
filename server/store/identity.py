"""Organizations, users and API tokens.

A token is `crg_<id>_<secret>`: the id finds the row, and the secret is compared with
its stored SHA-256 in constant time. The secret itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import peewee

from corrigo.server.api.errors import AlreadyExists, NotFound, Unauthenticated
from corrigo.server.store.database import (
    BaseModel,
    Sql,
    as_datetime,
    atomic,
    database,
    fetch,
    utcnow,
)
from corrigo.server.store.integrity import Refers, Unique
from corrigo.v1 import errors_pb2
from corrigo.v1.admin_pb2 import User as UserProto

TOKEN_PREFIX = "crg"
# last_used_at is a hint, not an audit log: refresh it at most this often per token.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# Tokens used since the last `flush_uses`: a call only notes its use, so a read never
# waits for a write (nor for SQLite's write lock).
_used: set[int] = set()


class Organization(BaseModel):
    id = peewee.AutoField()
    name = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)


class User(BaseModel):
    id = peewee.AutoField()
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    email = peewee.CharField(max_length=254, unique=True)
    display_name = peewee.CharField(max_length=200, default="")
    role = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)


class ApiToken(BaseModel):
    id = peewee.AutoField()
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    secret_hash = peewee.CharField(max_length=64)
    description = peewee.CharField(max_length=200, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)


class ServerSecret(BaseModel):
    id = peewee.AutoField()
    purpose = peewee.CharField(max_length=32, unique=True)
    value = peewee.TextField()


@dataclass(frozen=True)
class Principal:
    """Who a call is made by, as established from its token."""

    user_id: int
    organization_id: int
    role: int
    email: str
    token_id: int


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[int, str] | None:
    """(id, secret) of a well-formed token, else None."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id.isdigit() or len(token_id) > 9 or not secret:
        return None
    return int(token_id), secret


# The token's row and its user's, as `verify` reads them; other statements extend it.
TOKEN_COLUMNS = (
    "t.secret_hash, t.revoked_at, t.last_used_at, u.id, u.organization_id, u.role, u.email"
)
TOKEN_TABLES = 'api_token AS t JOIN "user" AS u ON u.id = t.user_id'
_TOKEN = Sql(f"SELECT {TOKEN_COLUMNS} FROM {TOKEN_TABLES} WHERE t.id = ?", bounded=True)


def parse_bearer(token: str) -> tuple[int, str]:
    """(id, secret) of a bearer token; UNAUTHENTICATED when it is malformed."""
    parsed = parse_token(token)
    if parsed is None:
        raise Unauthenticated(
            "malformed bearer token: expected 'Bearer crg_<id>_<secret>'",
            reason=errors_pb2.TOKEN_MALFORMED,
        )
    return parsed


async def verify(token_id: int, secret: str, row: Sequence[Any] | None) -> Principal:
    """The principal of a token whose TOKEN_COLUMNS are `row` (None: no such token);
    UNAUTHENTICATED unless the secret matches and the token is not revoked."""
    # Compare even when the id is unknown, so timing does not tell ids apart.
    stored = row[0] if row else "0" * 64
    if not hmac.compare_digest(stored, _hash(secret)) or not row:
        raise Unauthenticated("invalid token", reason=errors_pb2.TOKEN_INVALID)
    _, revoked_at, last_used_at, user_id, org_id, role, email = row[:7]
    if revoked_at is not None:
        raise Unauthenticated("token was revoked", reason=errors_pb2.TOKEN_REVOKED)
    last_used_at = as_datetime(last_used_at)
    now = utcnow()
    if last_used_at is None or now - last_used_at > _LAST_USED_RESOLUTION:
        _used.add(token_id)
    return Principal(user_id, org_id, role, email, token_id)


async def flush_uses() -> int:
    """Record now as the last use of the tokens used since the last flush, in one
    statement; how many. When it fails they stay noted for the next flush."""
    if not _used:
        return 0
    used = sorted(_used)
    _used.clear()
    try:
        await database.aexecute(ApiToken.update(last_used_at=utcnow()).where(ApiToken.id.in_(used)))
    except BaseException:
        _used.update(used)
        raise
    return len(used)


async def authenticate(token: str) -> Principal:
    token_id, secret = parse_bearer(token)
    rows = await fetch(_TOKEN, (token_id,))
    return await verify(token_id, secret, rows[0] if rows else None)


async def _issue_token(user_id: int, description: str) -> tuple[ApiToken, str]:
    secret = secrets.token_urlsafe(32)
    row = await ApiToken.acreate(user=user_id, secret_hash=_hash(secret), description=description)
    return row, f"{TOKEN_PREFIX}_{row.id}_{secret}"


async def bootstrap(org_name: str, email: str) -> tuple[Organization, User, str]:
    """Create an organization with its first admin and a token for them, in one transaction
    (it reads before it writes: on SQLite it takes the write lock first, or a concurrent
    write would make it fail with "database is locked")."""
    async with atomic():
        if await database.exists(Organization.select().where(Organization.name == org_name)):
            raise AlreadyExists(
                f"organization {org_name!r} is already bootstrapped",
                reason=errors_pb2.ALREADY_BOOTSTRAPPED,
            )
        if await database.exists(User.select().where(User.email == email)):
            raise AlreadyExists(f"a user with email {email!r} already exists")
        org = await Organization.acreate(name=org_name)
        user = await User.acreate(organization=org.id, email=email, role=UserProto.ADMIN)
        _, token = await _issue_token(user.id, "bootstrap")
    return org, user, token


async def break_glass(org_name: str, email: str) -> tuple[User, ApiToken, str]:
    """A new token for an existing admin of the organization, for an operator with the
    database but no token left (`corrigo admin token`); refuses anyone else."""
    org = await Organization.aget_or_none(Organization.name == org_name)
    if org is None:
        raise NotFound(
            f"no organization {org_name!r} in this database; `corrigo admin bootstrap` creates one"
        )
    admins = await database.list(
        User.select()
        .where(User.organization == org.id, User.role == UserProto.ADMIN)
        .order_by(User.id)
    )
    chosen = [user for user in admins if user.email == email]
    if not chosen:
        emails = ", ".join(user.email for user in admins[:5]) or "none"
        raise NotFound(f"no admin {email!r} in organization {org_name!r}; its admins: {emails}")
    user = chosen[0]
    row, token = await _issue_token(user.id, "break-glass (corrigo admin token)")
    return user, row, token


async def get_organization(org_id: int) -> Organization:
    return await Organization.aget_by_id(org_id)


async def create_user(org_id: int, email: str, role: int, display_name: str) -> User:
    exists = AlreadyExists(f"a user with email {email!r} already exists")
    async with atomic(Unique(User, [User.email], exists)):
        return await User.acreate(
            organization=org_id, email=email, role=role, display_name=display_name
        )


async def get_user(org_id: int, user_id: int) -> User:
    user = await User.aget_or_none(User.id == user_id, User.organization == org_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def list_users(org_id: int, after_id: int, limit: int) -> list[User]:
    query = (
        User.select()
        .where(User.organization == org_id, User.id > after_id)
        .order_by(User.id)
        .limit(limit)
    )
    return await database.list(query)


async def create_token(user_id: int, description: str) -> tuple[ApiToken, str]:
    async with atomic(Refers("user_id", "user", User, [user_id])):
        return await _issue_token(user_id, description)


async def list_tokens(user_id: int, after_id: int, limit: int) -> list[ApiToken]:
    query = (
        ApiToken.select()
        .where(ApiToken.user == user_id, ApiToken.id > after_id)
        .order_by(ApiToken.id)
        .limit(limit)
    )
    return await database.list(query)


async def get_token(org_id: int, token_id: int) -> ApiToken:
    """A token of the organization; NOT_FOUND for other organizations' tokens."""
    query = (
        ApiToken.select(ApiToken)
        .join(User)
        .where(ApiToken.id == token_id, User.organization == org_id)
    )
    rows = await database.list(query)
    if not rows:
        raise NotFound(f"API token {token_id} not found")
    return rows[0]


async def revoke_token(token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await database.aexecute(
            ApiToken.update(revoked_at=token.revoked_at).where(
                ApiToken.id == token.id, ApiToken.revoked_at.is_null()
            )
        )
    return token


async def server_secret(purpose: str) -> bytes:
    """The secret the first migration stored for `purpose` (the server does not start
    without it)."""
    row = await ServerSecret.aget_or_none(ServerSecret.purpose == purpose)
    if row is None:
        raise RuntimeError(f"the database holds no {purpose!r} secret (migration 0001 stores it)")
    return bytes.fromhex(row.value)
