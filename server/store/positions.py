"""Change positions: where in the order of writes each row an export shows last changed
(the write side, and the horizon below which followers read; `changes` reads them).

Positions live on the rows themselves (`change_tx` on comments, labellings and
predictions; migration 0050), not in a log beside them: a write costs no extra row, and a
row holds only its latest change, so what a follower reads stays proportional to the
data, not to its history. Each table's changes are read by index under the key a dataset
reaches them by (a source's comments, a dataset's labellings, a version's predictions).
A delete leaves a row at its position too: a deleted comment in `comment_removed`, a
removed labelling in `labelling_removed`.

A row's position is the position of the write that last changed it (`stamped`, taken
inside the write's own statement); rows of one write share it. The rule a follower rests on: it
reads positions below a horizon (`horizon()`), and no write can still commit a position
below a horizon once it has been taken, so nothing is skipped.
- SQLite: the position is `change_clock`'s one value. Writers only read it; a follower
  advances it before it reads, under the write lock, so every write that read the old
  value has committed and every later one reads the new value: the horizon is the new
  value. Positions follow commit order; the writes committed between two horizons share
  one position.
- PostgreSQL: the position is the writing transaction's id (each `change_tx` column's
  default), so no row is shared, locked or written by every write. The horizon is the oldest
  transaction id still running (`pg_snapshot_xmin`): every transaction below it has
  ended, and one that has not taken its id yet takes a larger one. Positions follow the
  order in which transactions took their ids: a write made after another was
  acknowledged has the larger position; two writes in flight together may be ordered
  either way, never a row's change before the change it replaced (the row's lock orders
  them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from corrigo.server.store.database import Sql, fetch, is_sqlite, write

# SQLite: the position of the write running this statement (the clock's value).
STAMP = "(SELECT value FROM change_clock)"


def stamped(sqlite: bool) -> tuple[str, str]:
    """The column and the value that stamp a row with its write's position, to append to
    an INSERT's columns and values: on PostgreSQL none, as the column's default is the
    transaction's id (migration 0050)."""
    return (", change_tx", f", {STAMP}") if sqlite else ("", "")


def stamped_insert(table: str, columns: str, width: int, rows: int, tail: str, sqlite: bool) -> Sql:
    """An INSERT of `rows` rows of `width` values into `columns` of `table`, each stamped
    with the write's position, then `tail` (an ON CONFLICT clause, which stamps an update
    with `change_tx = EXCLUDED.change_tx`)."""
    row = "(" + ", ".join("?" * width) + ")"
    values = ", ".join([row] * rows)
    if not sqlite:
        return Sql(f"INSERT INTO {table} ({columns}) VALUES {values}{tail}")
    # The clock read once for the statement: a subquery in each row costs three times
    # the insert itself. (WHERE true: an upsert's SELECT needs one, for SQLite's parser.)
    return Sql(
        f"INSERT INTO {table} ({columns}, change_tx) SELECT *, {STAMP} FROM (VALUES {values}) "
        f"WHERE true{tail}"
    )


# SQLite: the clock moves on under the write lock, so the writes that read the old value
# have all committed.
_ADVANCE = Sql("UPDATE change_clock SET value = value + 1 RETURNING value")
# PostgreSQL: the oldest transaction id still running (the next one when none is).
_OLDEST_RUNNING = Sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint", bounded=True)


class _Shared:
    # The horizon being read, and the read that follows it for the callers that came
    # while it ran (a read begun before a caller asked may be older than what it saw).
    reading: asyncio.Task[int] | None = None
    following: asyncio.Task[int] | None = None


async def horizon() -> int:
    """A position below which no write can still commit: every row with a smaller
    `change_tx` is in its final state for this position. Callers at the same moment share
    one read begun after they asked: on SQLite it is a write, which many followers would
    otherwise queue behind the writers."""
    reading = _Shared.reading
    if reading is None or reading.done():
        reading = _Shared.reading = _started(_read_horizon())
        return await asyncio.shield(reading)
    following = _Shared.following
    if following is None:
        following = _Shared.following = _started(_after(reading))
    return await asyncio.shield(following)


def _started(read: Coroutine[Any, Any, int]) -> asyncio.Task[int]:
    """`read` as a task its callers share; its failure is theirs, and is not also logged
    as never retrieved when they have all gone."""
    task = asyncio.ensure_future(read)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


async def _after(previous: asyncio.Task[int]) -> int:
    await asyncio.wait([previous])
    _Shared.following = None
    reading = _Shared.reading = _started(_read_horizon())
    return await reading


async def _read_horizon() -> int:
    if is_sqlite():
        return int((await write(_ADVANCE, ())).rows[0][0])
    return int((await fetch(_OLDEST_RUNNING, ()))[0][0])
