"""Bulk labelling: the checks and the one-transaction write of many comments' labellings
(BatchUpdateLabellings, and each chunk of StreamUpdateLabellings)."""

from __future__ import annotations

from collections.abc import Sequence

from corrigo.server.api import auth
from corrigo.server.api.validation import Violations
from corrigo.server.domain import labels
from corrigo.server.domain.uids import UID_FORMAT, split_uid
from corrigo.server.store import datasets, sources
from corrigo.server.store.database import utcnow
from corrigo.v1.datasets_pb2 import LabellingUpdate, StreamUpdateLabellingsRequest

MAX_LABELLINGS = 4096


def _check_item(
    checks: Violations, at: str, item: LabellingUpdate, has_sentiment: bool
) -> list[str]:
    """The checks of one item's labels that need no database; answers their names."""
    labels.check_assigned(checks, f"{at}.assigned", item.assigned, has_sentiment)
    labels.check_assigned(checks, f"{at}.dismissed", item.dismissed, has_sentiment)
    assigned = {label.name for label in item.assigned}
    for j, label in enumerate(item.dismissed):
        checks.check(
            label.name not in assigned,
            f"{at}.dismissed[{j}].name",
            f"label {label.name!r} is also assigned",
        )
    return [*assigned, *(label.name for label in item.dismissed)]


async def write(dataset: datasets.Dataset, items: Sequence[LabellingUpdate]) -> int:
    """Check every item (a violation naming `labellings[i]...` for each problem, all of
    them in one answer) and then set them all in one transaction; answers how many."""
    checks = Violations()
    if not checks.count("labellings", items, MAX_LABELLINGS, "labellings"):
        checks.raise_if_any()
    in_dataset = await datasets.dataset_sources(dataset.id)
    names: set[str] = set()
    wanted: list[tuple[int, tuple[str, str]]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = f"labellings[{i}]"
        names.update(_check_item(checks, at, item, dataset.has_sentiment))
        uid = item.comment_uid
        split = split_uid(uid)
        if not checks.check(split is not None, f"{at}.comment_uid", UID_FORMAT):
            continue
        assert split is not None
        if not checks.check(uid not in seen, f"{at}.comment_uid", f"{uid!r} given twice"):
            continue
        seen.add(uid)
        if checks.check(
            split[0] in in_dataset,
            f"{at}.comment_uid",
            f"source {split[0]} is not a source of the dataset",
        ):
            wanted.append((i, split))
    known = await datasets.label_names(
        dataset.id, [n for n in names if labels.name_problem(n) is None]
    )
    for i, item in enumerate(items):
        for field, given in (("assigned", item.assigned), ("dismissed", item.dismissed)):
            for j, label in enumerate(given):
                checks.check(
                    label.name in known or labels.name_problem(label.name) is not None,
                    f"labellings[{i}].{field}[{j}].name",
                    f"label {label.name!r} is not in the dataset's taxonomy",
                )
    found = await sources.comments_by_uid(in_dataset, [split for _, split in wanted])
    for i, split in wanted:
        checks.check(
            split in found,
            f"labellings[{i}].comment_uid",
            f"comment {items[i].comment_uid!r} not found",
        )
    checks.raise_if_any()
    rows = [
        (found[split], labels.label_list(items[i].assigned), labels.label_list(items[i].dismissed))
        for i, split in wanted
    ]
    await datasets.set_labellings(dataset.id, rows, utcnow(), "labellings.comment_uid")
    return len(rows)


async def first_dataset(chunk: StreamUpdateLabellingsRequest) -> datasets.Dataset:
    """The streamed labelling's dataset, named by its first chunk (whose project the
    call's rule checked before the handler ran)."""
    checks = Violations()
    checks.name("name", chunk.name)
    checks.raise_if_any()
    return await datasets.find(auth.project(), chunk.name)
