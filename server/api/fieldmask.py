"""AIP-134 field masks for partial updates."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from corrigo.server.api.validation import Violations


def fields_to_write(
    mask: FieldMask, message: Message, allowed: Sequence[str], checks: Violations
) -> list[str]:
    """The fields of `message` an update writes, in `allowed` order: those the mask names
    (a named field that is unset is cleared), or without a mask every populated field.
    A path not in `allowed` is a violation on `update_mask.paths[i]`."""
    if mask.paths:
        for i, path in enumerate(mask.paths):
            checks.check(
                path in allowed, f"update_mask.paths[{i}]", f"must be one of {', '.join(allowed)}"
            )
        return [name for name in allowed if name in mask.paths]
    populated = {descriptor.name for descriptor, _ in message.ListFields()}
    return [name for name in allowed if name in populated]
