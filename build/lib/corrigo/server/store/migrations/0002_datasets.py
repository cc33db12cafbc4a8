"""Sources and comments, datasets, label taxonomies and labellings, models, versions,
predictions and model tags."""

from typing import Any

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    DoubleField,
    Field,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


class BytesField(Field):
    """BLOB on SQLite, BYTEA on PostgreSQL, without BlobField's driver hook (which the
    asyncpg adapter lacks)."""

    field_type = "BLOB"


def up(migrator: Any, db: Any) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Project(Base):
        id = AutoField()

    class Source(Base):
        id = AutoField()
        project = ForeignKeyField(Project)
        hex_id = CharField(max_length=16, unique=True)
        name = CharField(max_length=64)
        title = CharField(max_length=256, default="")
        description = TextField(default="")
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("project", "name"), True),)

    class Comment(Base):
        id = BigAutoField()
        source = ForeignKeyField(Source, on_delete="CASCADE", index=False)
        comment_id = CharField(max_length=256)
        ts_us = BigIntegerField()
        created_us = BigIntegerField()
        ts_moved_us = BigIntegerField(null=True)
        content_hash = CharField(max_length=32)
        body = BytesField()

        class Meta:
            indexes = (
                (("source", "comment_id"), True),
                # The export's two keyset orders, per source.
                (("source", "ts_us", "id"), False),
                (("source", "created_us", "id"), False),
            )

    class Dataset(Base):
        id = AutoField()
        project = ForeignKeyField(Project)
        hex_id = CharField(max_length=16, unique=True)
        name = CharField(max_length=64)
        title = CharField(max_length=256, default="")
        description = TextField(default="")
        model_family = CharField(max_length=32)
        has_sentiment = BooleanField()
        created = DateTimeField()
        last_modified = DateTimeField()

        class Meta:
            indexes = ((("project", "name"), True),)

    class DatasetSource(Base):
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        source = ForeignKeyField(Source, on_delete="CASCADE")
        position = IntegerField()

        class Meta:
            primary_key = CompositeKey("dataset", "source")

    class LabelDef(Base):
        id = AutoField()
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        name = CharField(max_length=600)
        description = TextField(default="")

        class Meta:
            indexes = ((("dataset", "name"), True),)

    class Labelling(Base):
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")
        assigned = BytesField()
        dismissed = BytesField()
        updated_at = DateTimeField()

        class Meta:
            primary_key = CompositeKey("dataset", "comment")

    class MlModel(Base):
        id = AutoField()
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE")
        display_name = CharField(max_length=256)
        type = IntegerField()
        classes = TextField()
        labels = TextField()
        created_at = DateTimeField()

        class Meta:
            table_name = "model"

    class ModelVersion(Base):
        id = AutoField()
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        model = ForeignKeyField(MlModel, on_delete="CASCADE")
        version = IntegerField()
        validation_score = DoubleField()
        created_at = DateTimeField()

        class Meta:
            indexes = ((("dataset", "version"), True),)

    class Prediction(Base):
        version = ForeignKeyField(ModelVersion, on_delete="CASCADE", index=False)
        comment = ForeignKeyField(Comment, on_delete="CASCADE")
        labels = BytesField()

        class Meta:
            primary_key = CompositeKey("version", "comment")

    class ModelTag(Base):
        dataset = ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
        name = CharField(max_length=32)
        version = ForeignKeyField(ModelVersion, on_delete="CASCADE")
        updated_at = DateTimeField()

        class Meta:
            primary_key = CompositeKey("dataset", "name")

    with db.atomic():
        db.create_tables(
            [
                Source,
                Comment,
                Dataset,
                DatasetSource,
                LabelDef,
                Labelling,
                MlModel,
                ModelVersion,
                Prediction,
                ModelTag,
            ]
        )
