"""Deleted labels: a label deleted from a taxonomy is recorded in `label_retired` until
its name is pruned from the stored labellings in bounded steps (`store.retired_labels`);
reads leave the recorded names out meanwhile. A purge row of kind "label" (row_id: the
`label_retired` id) carries the lease of the server doing the pruning."""

from typing import Any

import peewee
from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, Model
from playhouse.sqlite_ext import AutoIncrementField


def up(migrator: Any, db: Any) -> None:
    # Ids are never reused (0031): on SQLite the key counts up with AUTOINCREMENT.
    key = AutoIncrementField if isinstance(db, peewee.SqliteDatabase) else AutoField

    class Dataset(Model):
        id = AutoField()

        class Meta:
            database = db
            table_name = "dataset"

    class LabelRetired(Model):
        id = key()
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        name = CharField(max_length=600)
        retired_at = DateTimeField()

        class Meta:
            database = db
            table_name = "label_retired"
            indexes = ((("dataset", "name"), True),)

    db.create_tables([LabelRetired])
