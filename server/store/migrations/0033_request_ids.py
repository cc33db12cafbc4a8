"""Request ids (AIP-155): the answer of each create a caller sent with a `request_id`, kept
for a day, so the same id sent again answers it instead of creating twice. Keyed by the
caller, the RPC and the id; `created_at` is what the daily sweep reads."""

from typing import Any

from peewee import CompositeKey, DateTimeField, Field, ForeignKeyField, Model, TextField


class BytesField(Field):
    """BLOB on SQLite, BYTEA on PostgreSQL (as 0002's)."""

    field_type = "BLOB"


def up(migrator: Any, db: Any) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        pass

    class RequestId(Base):
        user = ForeignKeyField(User, on_delete="CASCADE")
        method = TextField()
        request_id = TextField()
        # NULL only inside the transaction of the call that claimed the id.
        answer = BytesField(null=True)
        created_at = DateTimeField(index=True)

        class Meta:
            primary_key = CompositeKey("user", "method", "request_id")

    db.create_tables([RequestId])
