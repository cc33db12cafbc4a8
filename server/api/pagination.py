"""Opaque, stateless page tokens bound to their query.

A token carries a keyset position (the sort key of the last row served), sealed with
AES-GCM under the server's page-token key (kept in the database, so every replica reads
the tokens of every other) with the fingerprint of the query it was issued for as
associated data: the RPC, the caller's organization and every request field except the
token and the page size. A client can neither read nor forge one, and a token replayed
against another query is refused with INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message

from corrigo.server.api.errors import InvalidArgument
from corrigo.server.api.validation import Violations
from corrigo.server.ops import metrics
from corrigo.v1 import errors_pb2

T = TypeVar("T")

KEY_BYTES = 32
_NONCE = 12
# json.dumps with separators builds an encoder on every call.
_compact = json.JSONEncoder(separators=(",", ":")).encode


class PageTokens:
    """Issues and reads the page tokens of one key (AES-256-GCM, a random nonce a token)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a page-token key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def issue(self, query: bytes, position: Sequence[Any]) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, _compact(list(position)).encode(), query)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def read(self, token: str, query: bytes, field: str) -> list[Any]:
        """The position a token carries; INVALID_ARGUMENT on `field` when it is not ours
        or was issued for another query (the two cannot be told apart, by design)."""
        invalid = InvalidArgument.field(
            field,
            "invalid or expired token: pass a token exactly as returned, with every other "
            "field as in the first call",
            reason=errors_pb2.PAGE_TOKEN_INVALID,
        )
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            # (Too short a token leaves too short a nonce: a ValueError, caught too.)
            position = json.loads(self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], query))
        except (binascii.Error, ValueError, InvalidTag):
            raise invalid from None
        if not isinstance(position, list):
            raise invalid
        return position


# Set once at server start; until then every token is refused rather than issued unsealed.
_tokens: PageTokens | None = None


def configure(tokens: PageTokens) -> None:
    """Use `tokens` for every token this process issues or reads."""
    global _tokens
    _tokens = tokens


def _configured() -> PageTokens:
    if _tokens is None:
        raise RuntimeError("page tokens have no key: pagination.configure runs at server start")
    return _tokens


def fingerprint(
    method: str, organization_id: int, request: Message, exclude: Sequence[str]
) -> bytes:
    """What a token is bound to: the method, the tenant, and the request minus `exclude`."""
    bound = type(request)()
    bound.CopyFrom(request)
    for field in exclude:
        bound.ClearField(field)
    digest = hashlib.sha256(f"{method}\0{organization_id}\0".encode())
    digest.update(bound.SerializeToString(deterministic=True))
    return digest.digest()[:16]


def issue(query: bytes, position: Sequence[Any]) -> str:
    """A token for `position` in the query fingerprinted `query`, under the server's key."""
    return _configured().issue(query, position)


def read(token: str, query: bytes, field: str) -> list[Any]:
    """The position `token` carries for `query` (see `PageTokens.read`)."""
    try:
        return _configured().read(token, query, field)
    except InvalidArgument:
        metrics.page_token_refused()
        raise


def page(
    request: Message, checks: Violations, *, default: int = 100, maximum: int = 1000
) -> IdPager:
    """Keyset paging by id for the list RPC being served, bound to its method, the
    caller's organization and the project the request names (its id: a project created
    again under the same name refuses the old one's tokens)."""
    from corrigo.server.api import auth  # auth's store imports must not load before pagination

    call = auth.current()
    project = f"#{call.project.id}" if call.project is not None else ""
    return IdPager(
        call.method + project,
        call.principal.organization_id,
        request,
        checks,
        default=default,
        maximum=maximum,
    )


class IdPager:
    """Keyset paging by ascending integer id, for list RPCs with page_size/page_token."""

    def __init__(
        self,
        method: str,
        organization_id: int,
        request: Message,
        checks: Violations,
        *,
        default: int,
        maximum: int,
    ) -> None:
        self.query = fingerprint(method, organization_id, request, ("page_size", "page_token"))
        self.size = checks.page_size(
            "page_size",
            request.page_size,  # type: ignore[attr-defined]
            default=default,
            maximum=maximum,
        )
        self.token: str = request.page_token  # type: ignore[attr-defined]

    def bind(self, identity: int) -> None:
        """Bind the tokens to a resource the request names (its internal id, never
        reused), before the first `after` or `finish`."""
        self.query = hashlib.sha256(self.query + b"#%d" % identity).digest()[:16]

    def after(self) -> int:
        """The id the page starts after; 0 for the first page."""
        if not self.token:
            return 0
        return int(read(self.token, self.query, "page_token")[0])

    @property
    def fetch(self) -> int:
        """How many rows to ask the store for: one more than a page, to know if more follow."""
        return self.size + 1

    def finish(self, rows: list[T], id_of: Callable[[T], int]) -> tuple[list[T], str]:
        """The page's rows and the token for the next page ("" on the last page)."""
        if len(rows) <= self.size:
            return rows, ""
        rows = rows[: self.size]
        return rows, issue(self.query, [id_of(rows[-1])])
