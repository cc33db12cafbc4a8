"""Comment uids: `source_id.comment_id`, the source's 16 hex characters, a dot, the
comment's own id."""

from __future__ import annotations

import re

# A source's public id.
SOURCE_HEX_ID = re.compile(r"^[0-9a-f]{16}$")
# What a malformed uid is told, wherever a request names one.
UID_FORMAT = "must be source_id.comment_id (16 hex characters, '.', id)"


def split_uid(uid: str) -> tuple[str, str] | None:
    """(source hex id, comment id) of a well-formed comment uid."""
    source_hex, dot, comment_id = uid.partition(".")
    if not dot or not SOURCE_HEX_ID.match(source_hex) or not comment_id or len(comment_id) > 256:
        return None
    return source_hex, comment_id
