"""The comments (documents) that requests name by uid: lists of them (correction
sessions, document groups) and one of a dataset (labellings, corrections)."""

from __future__ import annotations

from collections.abc import Sequence

from corrigo.server.api.errors import NotFound
from corrigo.server.api.validation import Violations
from corrigo.server.domain.uids import UID_FORMAT, split_uid
from corrigo.server.store import datasets, sources

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
        split = split_uid(uid)
        if not checks.check(split is not None, f"{field}[{i}]", UID_FORMAT):
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


async def comment_of(
    checks: Violations,
    dataset: datasets.Dataset,
    uid: str,
    field: str = "comment_uid",
    in_dataset: dict[str, int] | None = None,
) -> tuple[str, int]:
    """The internal id of the comment `uid` of the dataset's sources (`in_dataset`, when
    the caller read them: hex id -> internal id): INVALID_ARGUMENT on `field` (with the
    problems `checks` holds) when it is malformed or of another source, NOT_FOUND when
    there is no such comment."""
    parsed = split_uid(uid)
    checks.check(parsed is not None, field, UID_FORMAT)
    checks.raise_if_any()
    assert parsed is not None
    if in_dataset is None:
        in_dataset = await datasets.dataset_sources(dataset.id)
    checks.check(
        parsed[0] in in_dataset, field, f"source {parsed[0]} is not a source of the dataset"
    )
    checks.raise_if_any()
    found = await sources.comments_by_uid({parsed[0]: in_dataset[parsed[0]]}, [parsed])
    if parsed not in found:
        raise NotFound(f"comment {uid!r} not found")
    return uid, found[parsed]
