"""Opaque, stateless page tokens bound to their query.

A token carries a keyset position (the sort key of the last row served) and a
fingerprint of the query it was issued for: the RPC, the caller's organization and
every request field except the token and the page size. It is encrypted and
authenticated with a secret kept in the database, so every replica reads the tokens of
every other, a client cannot read or forge one, and a token replayed against another
query is refused with INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

from corrigo.server import metrics
from corrigo.server.errors import InvalidArgument
from corrigo.server.validation import Violations
from corrigo.v1 import errors_pb2

T = TypeVar("T")

_NONCE = 12
_TAG = 16
# json.dumps with separators builds an encoder on every call.
_compact = json.JSONEncoder(separators=(",", ":")).encode


def _derived(secret: bytes) -> tuple[hmac.HMAC, hmac.HMAC]:
    """HMAC-SHA256 states keyed with the encryption and the signing key of a secret,
    made once when it is set: a token copies them rather than keying HMACs anew."""
    encrypting, signing = (
        hmac.new(hmac.digest(secret, purpose, "sha256"), digestmod=hashlib.sha256)
        for purpose in (b"encrypt", b"sign")
    )
    return encrypting, signing


_encrypting, _signing = _derived(b"")


def configure(secret: bytes) -> None:
    """Set the signing secret (done once at server start, from the database)."""
    global _encrypting, _signing
    _encrypting, _signing = _derived(secret)


def _mac(keyed: hmac.HMAC, data: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(data)
    return mac.digest()


def _xor_keystream(nonce: bytes, data: bytes) -> bytes:
    # HMAC-SHA256 in counter mode: a PRF keystream, enough to keep positions unreadable.
    stream = b"".join(
        _mac(_encrypting, nonce + counter.to_bytes(4, "big"))
        for counter in range((len(data) + 31) // 32)
    )
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(stream[: len(data)], "big")
    return mixed.to_bytes(len(data), "big")


def _signature(nonce: bytes, cipher: bytes) -> bytes:
    return _mac(_signing, nonce + cipher)[:_TAG]


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
    plain = query + _compact(list(position)).encode()
    nonce = secrets.token_bytes(_NONCE)
    cipher = _xor_keystream(nonce, plain)
    return base64.urlsafe_b64encode(nonce + cipher + _signature(nonce, cipher)).decode().rstrip("=")


def read(token: str, query: bytes, field: str) -> list[Any]:
    """The position a token carries; INVALID_ARGUMENT on `field` when it is not ours
    or was issued for another query."""
    try:
        return _position(token, query, field)
    except InvalidArgument:
        metrics.page_token_refused()
        raise


def _position(token: str, query: bytes, field: str) -> list[Any]:
    invalid = InvalidArgument.field(
        field,
        "invalid or expired token: pass a token exactly as returned, with the same query",
        reason=errors_pb2.PAGE_TOKEN_INVALID,
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    if len(raw) < _NONCE + len(query) + _TAG:
        raise invalid
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    if not hmac.compare_digest(tag, _signature(nonce, cipher)):
        raise invalid
    plain = _xor_keystream(nonce, cipher)
    if not hmac.compare_digest(plain[: len(query)], query):
        raise InvalidArgument.field(
            field,
            "token was issued for another query: keep every other field as in the first call",
            reason=errors_pb2.PAGE_TOKEN_INVALID,
        )
    position = json.loads(plain[len(query) :])
    if not isinstance(position, list):
        raise invalid
    return position


def page(
    request: Message, checks: Violations, *, default: int = 100, maximum: int = 1000
) -> IdPager:
    """Keyset paging by id for the list RPC being served, bound to its method and the
    caller's organization."""
    from corrigo.server import auth  # auth's store imports must not load before pagination

    call = auth.current()
    return IdPager(
        call.method,
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
