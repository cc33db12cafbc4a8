"""The move clock: one row whose value a sync that changes comments' `timestamp` advances
at the end of its transaction and stamps on them (`comment.ts_moved_us`), so the stamps
are ordered as the syncs commit; an export reads it when it starts and leaves out the
comments moved by syncs that committed later.

Its values continue the microsecond times the stamps held before: each is at least the
time it is taken, and the clock starts past every existing stamp, so the comments moved
before it count as moved before any export it serves, and a continuation issued before
it (which carries its export's start time) keeps its meaning."""

import datetime
from typing import Any

from peewee import BigIntegerField, IntegerField, Model, fn

_EPOCH = datetime.datetime(1970, 1, 1)


def up(migrator: Any, db: Any) -> None:
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Comment(Base):
        ts_moved_us = BigIntegerField(null=True)

    class MoveClock(Base):
        id = IntegerField(primary_key=True)
        value = BigIntegerField()

    db.create_tables([MoveClock])
    delta = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - _EPOCH
    now_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    latest = Comment.select(fn.MAX(Comment.ts_moved_us)).scalar() or 0
    MoveClock.create(id=1, value=max(now_us, latest))
