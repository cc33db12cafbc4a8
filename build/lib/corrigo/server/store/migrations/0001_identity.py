"""Organizations, users, API tokens, projects, memberships, and the server secret."""

import secrets
from typing import Any

from peewee import (
    AutoField,
    CharField,
    CompositeKey,
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

    class Organization(Base):
        id = AutoField()
        name = CharField(max_length=64, unique=True)
        created_at = DateTimeField()

    class User(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        email = CharField(max_length=254, unique=True)
        display_name = CharField(max_length=200, default="")
        role = IntegerField()
        created_at = DateTimeField()

    class ApiToken(Base):
        id = AutoField()
        user = ForeignKeyField(User, on_delete="CASCADE")
        secret_hash = CharField(max_length=64)
        description = CharField(max_length=200, default="")
        created_at = DateTimeField()
        revoked_at = DateTimeField(null=True)
        last_used_at = DateTimeField(null=True)

    class Project(Base):
        id = AutoField()
        organization = ForeignKeyField(Organization, on_delete="CASCADE")
        name = CharField(max_length=64)
        title = CharField(max_length=256, default="")
        created_at = DateTimeField()

        class Meta:
            indexes = ((("organization", "name"), True),)

    class Membership(Base):
        project = ForeignKeyField(Project, on_delete="CASCADE")
        user = ForeignKeyField(User, on_delete="CASCADE")
        role = IntegerField()

        class Meta:
            primary_key = CompositeKey("project", "user")
            indexes = ((("project", "user"), True),)

    class ServerSecret(Base):
        id = AutoField()
        purpose = CharField(max_length=32, unique=True)
        value = TextField()

    db.create_tables([Organization, User, ApiToken, Project, Membership, ServerSecret])
    # Signs page tokens; shared through the database so every replica accepts them.
    ServerSecret.create(purpose="page_tokens", value=secrets.token_hex(32))
