"""Leases on work that one server of many does at a time (the correction sweep): one row
per kind of work, whose holder renews it while it does the work; a lease that runs out
(its server died) lets another take it."""

from typing import Any

from peewee import CharField, DateTimeField, Model


def up(migrator: Any, db: Any) -> None:
    class WorkLease(Model):
        name = CharField(max_length=64, primary_key=True)
        owner = CharField(max_length=32, null=True)
        until = DateTimeField(null=True)

        class Meta:
            database = db
            legacy_table_names = False

    db.create_tables([WorkLease])
    WorkLease.create(name="correction-sweep")
