"""Page tokens: sealed under the server's key, bound to their query, refused without a key."""

from __future__ import annotations

import base64

import pytest

from corrigo.server.api import pagination
from corrigo.server.api.errors import InvalidArgument

QUERY = bytes(range(16))
tokens = pagination.PageTokens(b"k" * pagination.KEY_BYTES)


def test_a_token_gives_back_its_position_and_hides_it() -> None:
    token = tokens.issue(QUERY, [123456789, "b"])
    assert tokens.read(token, QUERY, "page_token") == [123456789, "b"]
    assert b"123456789" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(token) < 60
    # A random nonce a token: the same position never gives the same token twice.
    assert tokens.issue(QUERY, [1]) != tokens.issue(QUERY, [1])


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64!",
        "é",
        "AAAA",
        tokens.issue(bytes(16), [1]),  # another query
        pagination.PageTokens(b"o" * pagination.KEY_BYTES).issue(QUERY, [1]),  # another key
        tokens.issue(QUERY, [1])[:-2] + "AA",  # tampered
    ],
)
def test_a_token_not_ours_or_of_another_query_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        tokens.read(token, QUERY, "page_token")
    assert [field for field, _ in err.value.violations] == ["page_token"]


def test_a_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        pagination.PageTokens(b"")


def test_without_a_key_no_token_is_issued_or_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagination, "_tokens", None)
    with pytest.raises(RuntimeError, match="no key"):
        pagination.issue(QUERY, [1])
    with pytest.raises(RuntimeError, match="no key"):
        pagination.read("AAAA", QUERY, "page_token")
    pagination.configure(tokens)
    assert pagination.read(pagination.issue(QUERY, [7]), QUERY, "page_token") == [7]
