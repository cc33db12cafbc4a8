"""Lists of document uids in requests (correction sessions, document groups)."""

from __future__ import annotations

from collections.abc import Sequence

from corrigo.server import export
from corrigo.server.store import sources
from corrigo.server.validation import Violations

MAX_DOCUMENT_UIDS = 4096


async def resolve(
    checks: Violations, field: str, uids: Sequence[str], allowed: dict[str, int], where: str
) -> list[int]:
    """The internal comment ids of `uids`, in their order, with a violation naming
    `field[i]` for each uid that is malformed, repeated, or not a comment of the sources
    `allowed` (hex id -> internal id; `where` names them in the message)."""
    if not checks.check(
        len(uids) <= MAX_DOCUMENT_UIDS,
        field,
        f"at most {MAX_DOCUMENT_UIDS} documents, got {len(uids)}",
    ):
        return []
    parsed: list[tuple[int, tuple[str, str]]] = []
    seen: set[str] = set()
    for i, uid in enumerate(uids):
        split = export.split_uid(uid)
        if not checks.check(
            split is not None,
            f"{field}[{i}]",
            "must be source_id.comment_id (16 hex characters, '.', id)",
        ):
            continue
        assert split is not None
        if checks.check(uid not in seen, f"{field}[{i}]", f"{uid!r} given twice"):
            parsed.append((i, split))
        seen.add(uid)
    found = await sources.comments_by_uid(
        allowed, [split for _, split in parsed if split[0] in allowed]
    )
    ids = []
    for i, split in parsed:
        comment_id = found.get(split)
        if checks.check(
            comment_id is not None, f"{field}[{i}]", f"{uids[i]!r} is not a document of {where}"
        ):
            assert comment_id is not None
            ids.append(comment_id)
    return ids
