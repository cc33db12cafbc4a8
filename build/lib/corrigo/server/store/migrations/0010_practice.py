"""Practice: catalog (classes, agents, knowledge items), few-shot examples, sessions with
settings, session models, responses and the event log."""

from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator: Any, db: Any) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    # Frozen references to the identity tables of 0001 (only what the foreign keys need).
    class Organization(Base):
        id = AutoField()

    class User(Base):
        id = AutoField()

    class Project(Base):
        id = AutoField()

    class PracticeClass(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        project = ForeignKeyField(Project, null=True)
        name = CharField(max_length=200)
        description = TextField(default="")
        model_names = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class FewShotExample(Base):
        id = AutoField()
        user = ForeignKeyField(User, on_delete="CASCADE")
        input_text = TextField()
        output_text = TextField()
        is_active = BooleanField(default=True)
        title = CharField(max_length=200, null=True)
        meta = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class PracticeAgent(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        project = ForeignKeyField(Project, null=True)
        name = CharField(max_length=200)
        instructions = TextField(default="")
        style_preset = CharField(max_length=64)
        style_params = TextField()
        generation_params = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class PracticeAgentExample(Base):
        id = AutoField()
        agent = ForeignKeyField(PracticeAgent, on_delete="CASCADE")
        example = ForeignKeyField(FewShotExample, on_delete="CASCADE")
        sort_order = IntegerField()

        class Meta:
            indexes = ((("agent", "example"), True),)

    class KnowledgeItem(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        project = ForeignKeyField(Project, null=True)
        title = CharField(max_length=200)
        content = TextField(default="")
        meta = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class PracticeSession(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        user = ForeignKeyField(User, on_delete="CASCADE")
        project = ForeignKeyField(Project, null=True)
        practice_class = ForeignKeyField(PracticeClass, null=True, on_delete="SET NULL")
        agent = ForeignKeyField(PracticeAgent, null=True, on_delete="SET NULL")
        kind = IntegerField()
        title = CharField(max_length=500, null=True)
        notes = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("user", "id"), False),)

    class PracticeSessionKnowledge(Base):
        id = AutoField()
        session = ForeignKeyField(PracticeSession, on_delete="CASCADE")
        knowledge = ForeignKeyField(KnowledgeItem, on_delete="CASCADE")
        sort_order = IntegerField()

        class Meta:
            indexes = ((("session", "knowledge"), True),)

    class PracticeSetting(Base):
        id = AutoField()
        session = ForeignKeyField(PracticeSession, unique=True, on_delete="CASCADE")
        style_preset = CharField(max_length=64)
        style_params = TextField()
        generation_params = TextField()
        agent_snapshot = TextField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class PracticeFewShotLink(Base):
        id = AutoField()
        setting = ForeignKeyField(PracticeSetting, on_delete="CASCADE")
        example = ForeignKeyField(FewShotExample, on_delete="CASCADE")
        sort_order = IntegerField()
        created_at = DateTimeField()

        class Meta:
            indexes = ((("setting", "example"), True),)

    class PracticeSessionModel(Base):
        id = AutoField()
        session = ForeignKeyField(PracticeSession, on_delete="CASCADE")
        model_name = CharField(max_length=200)
        sort_order = IntegerField()
        created_at = DateTimeField()
        retired_at = DateTimeField(null=True)

    class PracticeResponse(Base):
        id = AutoField()
        session = ForeignKeyField(PracticeSession, on_delete="CASCADE")
        session_model = ForeignKeyField(PracticeSessionModel, on_delete="CASCADE")
        model_name = CharField(max_length=200)
        prompt_text = TextField()
        response_text = TextField()
        token_usage = TextField()
        latency_ms = IntegerField()
        created_at = DateTimeField()

        class Meta:
            indexes = ((("session", "id"), False),)

    class PracticeEvent(Base):
        id = AutoField()
        session = ForeignKeyField(PracticeSession, on_delete="CASCADE")
        type = IntegerField()
        text = TextField(default="")
        rating = IntegerField(default=0)
        response = ForeignKeyField(PracticeResponse, null=True, on_delete="CASCADE")
        data = TextField()
        created_at = DateTimeField()

        class Meta:
            indexes = ((("session", "id"), False),)

    # Only the practice tables: the identity stand-ins above were created by 0001.
    db.create_tables(
        [
            PracticeClass,
            FewShotExample,
            PracticeAgent,
            PracticeAgentExample,
            KnowledgeItem,
            PracticeSession,
            PracticeSessionKnowledge,
            PracticeSetting,
            PracticeFewShotLink,
            PracticeSessionModel,
            PracticeResponse,
            PracticeEvent,
        ]
    )
