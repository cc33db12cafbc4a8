"""Column types shared by stores."""

from __future__ import annotations

import json
from typing import Any

import peewee


class JSONField(peewee.TextField):
    """A JSON document in a TEXT column: portable across SQLite and PostgreSQL, and only
    ever read and written whole (nothing queries inside it)."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)
