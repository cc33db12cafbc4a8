"""AIP-134 field masks for partial updates."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from corrigo.server.validation import Violations


def fields_to_write(
    mask: FieldMask,
    message: Message,
    allowed: Sequence[str],
    checks: Violations,
    field: str = "update_mask",
) -> list[str]:
    """The fields of `message` an update writes, in `allowed` order: those the mask names
    (a named field that is unset is cleared), or without a mask every populated field.
    Unknown mask paths are a violation on `field`."""
    if mask.paths:
        unknown = sorted(set(mask.paths) - set(allowed))
        if unknown:
            checks.add(
                field, f"unknown path(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        return [name for name in allowed if name in mask.paths]
    populated = {descriptor.name for descriptor, _ in message.ListFields()}
    return [name for name in allowed if name in populated]
