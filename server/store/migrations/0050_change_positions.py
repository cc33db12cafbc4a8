"""Change positions: every row an export shows (a comment, a labelling, a prediction) says
which write last changed it (`change_tx`), so a follower reads what changed since its
position by index, and a row holds only its latest change (`store.positions`, `store.changes`).

A write's position, taken in the write's own statement:
- SQLite: `change_clock`'s one value; writers read it, a follower advances it before it
  reads, and the write lock orders the two.
- PostgreSQL: the writing transaction's id, each `change_tx` column's default, so no row
  is shared by writes; a follower reads up to the oldest transaction still running.

Rows written before this migration are at position 0.

A delete leaves a position too: `comment_removed` for a deleted comment (by source: the
comment's row is gone, so the uid is kept) and `labelling_removed` for a removed
labelling (by dataset), one row per comment, each at the delete's position."""

from typing import Any

import peewee
from peewee import BigIntegerField, CharField, CompositeKey, DateTimeField, ForeignKeyField, Model

# Per table: the key its changes are read under, then the row's own key.
_INDEXED = {
    "comment": ("source_id", "id"),
    "labelling": ("dataset_id", "comment_id"),
    "prediction": ("version_id", "comment_id"),
}


def up(migrator: Any, db: Any) -> None:
    sqlite = isinstance(db, peewee.SqliteDatabase)
    if sqlite:
        db.execute_sql("CREATE TABLE change_clock (value BIGINT NOT NULL)")
        db.execute_sql("INSERT INTO change_clock (value) VALUES (1)")
    for table, (scope, key) in _INDEXED.items():
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN change_tx BIGINT NOT NULL DEFAULT 0')
        db.execute_sql(f'CREATE INDEX "{table}_changes" ON "{table}" ({scope}, change_tx, {key})')

    class Source(Model):
        class Meta:
            database = db
            table_name = "source"

    class Dataset(Model):
        class Meta:
            database = db
            table_name = "dataset"

    class Comment(Model):
        id = BigIntegerField(primary_key=True)

        class Meta:
            database = db
            table_name = "comment"

    class CommentRemoved(Model):
        source = ForeignKeyField(Source, on_delete="CASCADE", index=False)
        # The comment's internal id (never reused) and its id in the source.
        comment_id = BigIntegerField(primary_key=True)
        name = CharField(max_length=256)
        change_tx = BigIntegerField()
        removed_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "comment_removed"
            indexes = ((("source", "change_tx", "comment_id"), False),)

    class LabellingRemoved(Model):
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")
        change_tx = BigIntegerField()
        removed_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "labelling_removed"
            primary_key = CompositeKey("dataset", "comment")
            indexes = ((("dataset", "change_tx", "comment"), False),)

    db.create_tables([CommentRemoved, LabellingRemoved])
    if not sqlite:
        for table in (*_INDEXED, "comment_removed", "labelling_removed"):
            db.execute_sql(
                f'ALTER TABLE "{table}" ALTER COLUMN change_tx '
                "SET DEFAULT pg_current_xact_id()::text::bigint"
            )
