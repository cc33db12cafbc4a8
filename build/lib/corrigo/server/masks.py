"""FieldMask checks for partial updates (AIP-134)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import field_mask_pb2

from corrigo.server.validation import Violations


def check_update_mask(
    checks: Violations, mask: field_mask_pb2.FieldMask, allowed: Sequence[str]
) -> list[str]:
    """The mask's paths, each checked against `allowed`; empty means 'write every
    non-empty field'."""
    for i, path in enumerate(mask.paths):
        checks.check(
            path in allowed, f"update_mask.paths[{i}]", f"must be one of {', '.join(allowed)}"
        )
    return list(mask.paths)
