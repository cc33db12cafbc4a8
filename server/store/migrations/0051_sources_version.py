"""A dataset's sources version: moved by every change of the dataset's sources, so a
follow stream learns of it by reading one row (`store.changes.look`). A source's delete
takes its links away without it (the stream counts them), as moving it there would lock
the dataset rows after the source's, against the order an update of the sources takes."""

from typing import Any


def up(migrator: Any, db: Any) -> None:
    db.execute_sql("ALTER TABLE dataset ADD COLUMN sources_version BIGINT NOT NULL DEFAULT 0")
