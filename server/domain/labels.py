"""Hierarchical label names (`Parent > Child`) and the checks of labels and sentiment."""

from __future__ import annotations

import math
from collections.abc import Sequence

from corrigo.server.api.validation import Violations
from corrigo.server.store import datasets
from corrigo.v1.comments_pb2 import AssignedLabels, Label, PredictedLabel

SEPARATOR = datasets.LABEL_SEPARATOR
MAX_LEVELS = 8
MAX_LEVEL_LENGTH = 64
SENTIMENTS = ("positive", "negative")
MAX_LABELS = 1024


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid hierarchical label name, or None."""
    levels = name.split(SEPARATOR)
    if not name or len(levels) > MAX_LEVELS:
        return f"required: 1..{MAX_LEVELS} levels separated by '{SEPARATOR}'"
    for level in levels:
        if not 1 <= len(level) <= MAX_LEVEL_LENGTH or level != level.strip() or ">" in level:
            return (
                f"each level is 1..{MAX_LEVEL_LENGTH} characters without '>' or surrounding "
                f"spaces, levels separated by '{SEPARATOR}'"
            )
    return None


def ancestors(name: str) -> list[str]:
    """`A > B > C` -> [`A`, `A > B`]."""
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]


def check_name(checks: Violations, field: str, name: str) -> bool:
    problem = name_problem(name)
    if problem:
        checks.add(field, problem)
    return problem is None


def check_assigned(
    checks: Violations, field: str, labels: Sequence[Label], has_sentiment: bool
) -> None:
    """Names valid and unique, sentiment exactly when the dataset has it."""
    if not checks.check(len(labels) <= 256, field, f"at most 256 labels, got {len(labels)}"):
        return
    seen: set[str] = set()
    for i, label in enumerate(labels):
        check_name(checks, f"{field}[{i}].name", label.name)
        if label.name in seen:
            checks.add(f"{field}[{i}].name", f"label {label.name!r} given twice")
        seen.add(label.name)
        if has_sentiment:
            checks.check(
                label.sentiment in SENTIMENTS,
                f"{field}[{i}].sentiment",
                "required: 'positive' or 'negative' (the dataset has sentiment)",
            )
        else:
            checks.check(
                not label.sentiment,
                f"{field}[{i}].sentiment",
                "must be empty: the dataset has no sentiment",
            )


def check_predicted(
    checks: Violations, field: str, labels: Sequence[PredictedLabel], has_sentiment: bool
) -> None:
    if not checks.check(
        len(labels) <= MAX_LABELS, field, f"at most {MAX_LABELS} labels, got {len(labels)}"
    ):
        return
    seen: set[str] = set()
    for i, label in enumerate(labels):
        at = f"{field}[{i}]"
        check_name(checks, f"{at}.name", label.name)
        if label.name in seen:
            checks.add(f"{at}.name", f"label {label.name!r} given twice")
        seen.add(label.name)
        checks.check(
            math.isfinite(label.probability) and 0 <= label.probability <= 1,
            f"{at}.probability",
            f"must be 0..1, got {label.probability}",
        )
        if has_sentiment:
            checks.check(
                math.isfinite(label.sentiment) and -1 <= label.sentiment <= 1,
                f"{at}.sentiment",
                f"must be -1..1, got {label.sentiment}",
            )
        else:
            checks.check(
                label.sentiment == 0,
                f"{at}.sentiment",
                "must be 0: the dataset has no sentiment",
            )


def label_list(items: Sequence[Label]) -> bytes:
    """A labelling's stored label list (b"" when empty)."""
    return AssignedLabels(assigned=items).SerializeToString() if items else b""


async def check_labelling(
    checks: Violations,
    dataset: datasets.Dataset,
    assigned: Sequence[Label],
    dismissed: Sequence[Label],
) -> None:
    """The checks of a labelling's assigned and dismissed labels: valid, unique, not both
    assigned and dismissed, sentiment as the dataset has it, in its taxonomy."""
    check_assigned(checks, "assigned", assigned, dataset.has_sentiment)
    check_assigned(checks, "dismissed", dismissed, dataset.has_sentiment)
    checks.raise_if_any()
    assigned_names = {label.name for label in assigned}
    for i, label in enumerate(dismissed):
        checks.check(
            label.name not in assigned_names,
            f"dismissed[{i}].name",
            f"label {label.name!r} is also assigned",
        )
    names = [label.name for label in (*assigned, *dismissed)]
    known = await datasets.label_names(dataset.id, names)
    if len(known) < len(set(names)):
        # Not in its taxonomy, unless a concurrent call deleted the dataset.
        await datasets.by_id(dataset.id)
    for field, given in (("assigned", assigned), ("dismissed", dismissed)):
        for i, label in enumerate(given):
            checks.check(
                label.name in known,
                f"{field}[{i}].name",
                f"label {label.name!r} is not in the dataset's taxonomy",
            )
