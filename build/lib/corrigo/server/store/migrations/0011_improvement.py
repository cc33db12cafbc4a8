"""Improvement: batches, one state row per organization naming its active batch, and the
sessions scheduled into batches with their numbers."""

from typing import Any

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model


def up(migrator: Any, db: Any) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    # Frozen references to tables of 0001 and 0010 (only what the foreign keys need).
    class Organization(Base):
        id = AutoField()

    class PracticeSession(Base):
        id = AutoField()

    class ImprovementBatch(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        batch_key = CharField(max_length=32, unique=True)
        status = IntegerField()
        session_count = IntegerField(default=0)
        opened_at = DateTimeField()
        released_at = DateTimeField(null=True)
        release_id = CharField(max_length=128, null=True)

        class Meta:
            indexes = ((("organization", "release_id"), True),)

    class ImprovementState(Base):
        organization = ForeignKeyField(Organization, primary_key=True, on_delete="CASCADE")
        active_batch = ForeignKeyField(ImprovementBatch, null=True)

    class ImprovementEntry(Base):
        id = AutoField()
        batch = ForeignKeyField(ImprovementBatch, on_delete="CASCADE")
        session = ForeignKeyField(PracticeSession, unique=True)
        number = IntegerField()
        scheduled_at = DateTimeField()

        class Meta:
            indexes = ((("batch", "number"), True),)

    db.create_tables([ImprovementBatch, ImprovementState, ImprovementEntry])
