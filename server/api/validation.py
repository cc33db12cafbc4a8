"""Checks of request fields. Collects every violation so one answer names them all."""

from __future__ import annotations

import re
from collections.abc import Sized

from corrigo.server.api.errors import InvalidArgument

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_ID = 2**31 - 1


class Violations:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.items.append((field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def count(self, field: str, items: Sized, maximum: int, noun: str) -> bool:
        """A repeated field holds 1..maximum items (`noun`, as the violation names them)."""
        size = len(items)
        return self.check(1 <= size <= maximum, field, f"1..{maximum} {noun} required, got {size}")

    def name(self, field: str, value: str) -> None:
        self.check(
            bool(NAME_PATTERN.match(value)),
            field,
            "required: 1..64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )

    def text(self, field: str, value: str, maximum: int, *, required: bool = False) -> None:
        if required and not value.strip():
            self.add(field, "required")
        elif len(value) > maximum:
            self.add(field, f"at most {maximum} characters, got {len(value)}")

    def email(self, field: str, value: str) -> None:
        if self.check(bool(value), field, "required"):
            self.check(
                len(value) <= 254 and bool(EMAIL_PATTERN.match(value)),
                field,
                "must be an email address of at most 254 characters",
            )

    def id(self, field: str, value: int, *, optional: bool = False) -> None:
        if optional and value == 0:
            return
        self.check(value >= 1, field, f"must be >= 1, got {value}")

    def stored_id(self, field: str, value: int) -> None:
        """The id of a row this server stores: 1..MAX_ID (no larger one can exist)."""
        self.check(1 <= value <= MAX_ID, field, f"must be >= 1, got {value}")

    def enum(self, field: str, value: int, allowed: dict[int, str]) -> None:
        if value not in allowed:
            names = ", ".join(allowed.values())
            self.add(field, f"must be one of {names}, got {value}")

    def page_size(self, field: str, value: int, *, default: int, maximum: int) -> int:
        if not self.check(0 <= value <= maximum, field, f"must be 0..{maximum}, got {value}"):
            return default
        return value or default

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
