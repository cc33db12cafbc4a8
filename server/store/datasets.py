"""Datasets, the sources they show, their label taxonomy and the comments' labellings.

A labelling keeps its assigned and dismissed labels as serialized `AssignedLabels`
messages, so the export merges them into its answer without building them in Python.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from corrigo.server.api.errors import AlreadyExists, FailedPrecondition, NotFound
from corrigo.server.store.access import Companion
from corrigo.server.store.connections import held
from corrigo.server.store.database import (
    BaseModel,
    Sql,
    as_datetime,
    atomic,
    database,
    fetch,
    is_sqlite,
    utcnow,
    write,
)
from corrigo.server.store.integrity import Refers, Unique, guarded, written
from corrigo.server.store.positions import stamped, stamped_insert
from corrigo.server.store.projects import Membership, Project
from corrigo.server.store.sources import MOVE_CLOCK_NOW, BytesField, Comment, Source, new_hex_id
from corrigo.v1 import errors_pb2
from corrigo.v1.comments_pb2 import AssignedLabels


class Dataset(BaseModel):
    id = peewee.AutoField()
    # NULL once deleted: the rows wait for their purge (`purge`).
    project = peewee.ForeignKeyField(Project, null=True)
    hex_id = peewee.CharField(max_length=16, unique=True)
    name = peewee.CharField(max_length=64)
    title = peewee.CharField(max_length=256, default="")
    description = peewee.TextField(default="")
    model_family = peewee.CharField(max_length=32)
    has_sentiment = peewee.BooleanField()
    created = peewee.DateTimeField(default=utcnow)
    last_modified = peewee.DateTimeField(default=utcnow)
    # Moved by each change of the set of the dataset's sources (migration 0051).
    sources_version = peewee.BigIntegerField(default=0)

    class Meta:
        indexes = ((("project", "name"), True),)

    @classmethod
    def present(cls) -> tuple[Any, ...]:
        return (cls.project.is_null(False),)


class DatasetSource(BaseModel):
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    source = peewee.ForeignKeyField(Source, on_delete="CASCADE")
    # Keeps source_ids in the order they were given.
    position = peewee.IntegerField()

    class Meta:
        primary_key = peewee.CompositeKey("dataset", "source")


# Between the levels of a hierarchical label name (`Parent > Child`).
LABEL_SEPARATOR = " > "


class LabelDef(BaseModel):
    id = peewee.AutoField()
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    name = peewee.CharField(max_length=600)
    description = peewee.TextField(default="")

    class Meta:
        indexes = ((("dataset", "name"), True),)


class LabelRetired(BaseModel):
    """A label deleted from the taxonomy whose name is still being pruned from the stored
    labellings (`retired_labels`)."""

    id = peewee.AutoField()
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    name = peewee.CharField(max_length=600)
    retired_at = peewee.DateTimeField()

    class Meta:
        table_name = "label_retired"
        indexes = ((("dataset", "name"), True),)


class Labelling(BaseModel):
    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")
    assigned = BytesField()
    dismissed = BytesField()
    updated_at = peewee.DateTimeField(default=utcnow)
    # The position of the write that last changed the labelling (`positions`).
    change_tx = peewee.BigIntegerField()

    class Meta:
        primary_key = peewee.CompositeKey("dataset", "comment")


class LabellingRemoved(BaseModel):
    """A removed labelling, at the removal's position (`positions`)."""

    dataset = peewee.ForeignKeyField(Dataset, on_delete="CASCADE", index=False)
    comment = peewee.ForeignKeyField(Comment, on_delete="CASCADE")
    change_tx = peewee.BigIntegerField()
    removed_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        primary_key = peewee.CompositeKey("dataset", "comment")


@dataclass
class DatasetView:
    """A dataset with its sources' hex ids, in their order."""

    row: Dataset
    owner: str
    source_hex_ids: list[str]


async def _source_hex_ids(dataset_ids: Sequence[int]) -> dict[int, list[str]]:
    if not dataset_ids:
        return {}
    rows = await database.list(
        DatasetSource.select(DatasetSource.dataset, Source.hex_id)
        .join(Source)
        .where(DatasetSource.dataset.in_(list(dataset_ids)))
        .order_by(DatasetSource.dataset, DatasetSource.position)
        .tuples()
    )
    found: dict[int, list[str]] = {i: [] for i in dataset_ids}
    for dataset_id, hex_id in rows:
        found[dataset_id].append(hex_id)
    return found


async def _link_sources(dataset_id: int, source_ids: Sequence[int]) -> bool:
    """Link the dataset to `source_ids` (in that order) instead of its sources; whether
    the set of its sources changed."""
    # The sources first (linked and to link), locked on PostgreSQL as a source's delete
    # locks them before its links: taken in the other order, the two would deadlock. A
    # source deleted meanwhile answers NOT_FOUND (the guard).
    linked = DatasetSource.select(DatasetSource.source).where(DatasetSource.dataset == dataset_id)
    sources = (
        Source.select(Source.id, Source.project)
        .where(Source.id.in_(linked) | Source.id.in_(list(source_ids)))
        .order_by(Source.id)
    )
    if not is_sqlite():
        sources = sources.for_update("FOR KEY SHARE")
    present = {key for key, project in await database.list(sources.tuples()) if project is not None}
    if not present.issuperset(source_ids):
        raise Source.DoesNotExist()
    was = {source for (source,) in await database.list(linked.tuples())}
    await database.aexecute(DatasetSource.delete().where(DatasetSource.dataset == dataset_id))
    if source_ids:
        await database.aexecute(
            DatasetSource.insert_many(
                [
                    {
                        DatasetSource.dataset: dataset_id,
                        DatasetSource.source: source,
                        DatasetSource.position: i,
                    }
                    for i, source in enumerate(source_ids)
                ]
            )
        )
    return was != set(source_ids)


async def create_dataset(
    project: Project,
    name: str,
    fields: dict[str, object],
    source_ids: Sequence[int],
) -> Dataset:
    exists = AlreadyExists(f"dataset {name!r} already exists in {project.name!r}")
    async with atomic(
        Unique(Dataset, [Dataset.project, Dataset.name], exists),
        Refers("owner", "project", Project, {project.id: project.name}),
        Refers("dataset.source_ids", "source", Source, source_ids, shown=False),
    ):
        now = utcnow()
        row = await Dataset.acreate(
            project=project.id,
            hex_id=new_hex_id(),
            name=name,
            created=now,
            last_modified=now,
            **fields,
        )
        await _link_sources(row.id, source_ids)
    return row


def dataset_ref(dataset_id: int, field: str = "name") -> Refers:
    """The guard of a write to the dataset (named by the request's `field`)."""
    return Refers(field, "dataset", Dataset, [dataset_id], shown=False)


def _not_found(project: Project, name: str) -> NotFound:
    return NotFound(f"dataset {project.name}/{name} not found")


# A dataset's columns, in the order `_dataset_of` takes them.
_COLUMNS = (
    "d.id, d.hex_id, d.name, d.title, d.description, d.model_family, d.has_sentiment, "
    "d.created, d.last_modified"
)
_DATASET = Sql(
    f"SELECT {_COLUMNS} FROM dataset AS d WHERE d.project_id = ? AND d.name = ?", bounded=True
)


def _dataset_of(project_id: int, row: Sequence[Any]) -> Dataset:
    return Dataset(
        id=row[0],
        project=project_id,
        hex_id=row[1],
        name=row[2],
        title=row[3],
        description=row[4],
        model_family=row[5],
        has_sentiment=Dataset.has_sentiment.python_value(row[6]),
        created=as_datetime(row[7]),
        last_modified=as_datetime(row[8]),
    )


async def find(project: Project, name: str) -> Dataset:
    # Written out: every dataset-scoped call asks, and Peewee's get_or_none builds its
    # SQL anew each time, which costs more than the read.
    rows = await fetch(_DATASET, (project.id, name))
    if not rows:
        raise _not_found(project, name)
    return _dataset_of(project.id, rows[0])


# The named dataset of the project `p` with its sources, a row each (one row of NULLs for
# those when it has none), for a read made with the call's access check.
_WITH_SOURCES = (
    "LEFT JOIN dataset AS d ON d.project_id = p.id AND d.name = ? "
    "LEFT JOIN dataset_source AS ds ON ds.dataset_id = d.id "
    "LEFT JOIN source AS s ON s.id = ds.source_id"
)

# GetDataset's whole read, made with the call's access check (see `access.Companion`);
# UpdateLabelling's dataset and the ids of its sources.
VIEW_WITH_ACCESS = Companion(
    columns=f"{_COLUMNS}, s.hex_id, s.id",
    joins=_WITH_SOURCES,
    order="ds.position",
)

# What an export reads of its dataset: the dataset, its sources, the move clock, whether
# labels are being pruned, and the sources' version.
_EXPORT_COLUMNS = (
    f"d.id, s.hex_id, s.id, {MOVE_CLOCK_NOW}, "
    "EXISTS (SELECT 1 FROM label_retired AS r WHERE r.dataset_id = d.id), d.sources_version"
)
# ... read with its access check.
SOURCES_WITH_ACCESS = Companion(columns=_EXPORT_COLUMNS, joins=_WITH_SOURCES)
# The dataset `d` by id with its sources `s`, a row each (one row of NULLs for those when
# it has none), none for a dataset that is gone.
_BY_ID_WITH_SOURCES = (
    "FROM dataset AS d LEFT JOIN dataset_source AS ds ON ds.dataset_id = d.id "
    "LEFT JOIN source AS s ON s.id = ds.source_id WHERE d.id = ? AND d.project_id IS NOT NULL"
)
# ... read again by a follow stream.
_EXPORT_SOURCES = Sql(f"SELECT {_EXPORT_COLUMNS} {_BY_ID_WITH_SOURCES}", bounded=True)


def _gone() -> NotFound:
    """A dataset a caller's row refers to, deleted by a concurrent call."""
    return NotFound("the dataset was deleted", metadata={"resource": "dataset"})


def _companion_first(project: Project, name: str, rows: Sequence[Sequence[Any]]) -> Sequence[Any]:
    """The first of a companion read's rows over `_WITH_SOURCES`; NOT_FOUND when the
    dataset is not there (its columns NULL)."""
    if not rows or rows[0][0] is None:
        raise _not_found(project, name)
    return rows[0]


@dataclass(frozen=True)
class ExportSources:
    """What an export reads with its access check (SOURCES_WITH_ACCESS)."""

    dataset_id: int
    # hex id -> internal id
    sources: dict[str, int]
    # The move clock's value (`sources.MOVE_CLOCK_NOW`).
    move_clock: int
    # Whether deleted labels are still being pruned from the labellings (`retired_names`).
    retiring: bool
    # The version of the dataset's sources (`Dataset.sources_version`).
    sources_version: int


def _export_sources(rows: Sequence[Sequence[Any]]) -> ExportSources:
    first = rows[0]
    return ExportSources(
        first[0],
        {hex_id: source_id for _, hex_id, source_id, *_ in rows if hex_id is not None},
        int(first[3]),
        bool(first[4]),
        int(first[5]),
    )


def sources_read(project: Project, name: str, rows: Sequence[Sequence[Any]]) -> ExportSources:
    """The dataset `name` of `project`, its sources and the move clock, from the rows of
    SOURCES_WITH_ACCESS."""
    _companion_first(project, name, rows)
    return _export_sources(rows)


async def export_sources(dataset_id: int) -> ExportSources:
    """What `sources_read` answers, read by the dataset's id: NOT_FOUND once it is
    deleted."""
    rows = await fetch(_EXPORT_SOURCES, (dataset_id,))
    if not rows:
        raise _gone()
    return _export_sources(rows)


def view_read(project: Project, name: str, rows: Sequence[Sequence[Any]]) -> DatasetView:
    """The dataset `name` of `project` from the rows of VIEW_WITH_ACCESS."""
    row = _dataset_of(project.id, _companion_first(project, name, rows))
    return DatasetView(row, project.name, [r[9] for r in rows if r[9] is not None])


def sources_view_read(
    project: Project, name: str, rows: Sequence[Sequence[Any]]
) -> tuple[Dataset, dict[str, int]]:
    """The dataset `name` of `project` and its sources (hex id -> internal id, as
    `dataset_sources`) from the rows of VIEW_WITH_ACCESS."""
    row = _dataset_of(project.id, _companion_first(project, name, rows))
    return row, {r[9]: r[10] for r in rows if r[9] is not None}


async def by_id(dataset_id: int) -> Dataset:
    """The dataset `dataset_id` (one a caller's row refers to): NOT_FOUND once a
    concurrent call deleted it."""
    row: Dataset | None = await Dataset.aget_or_none(Dataset.id == dataset_id, *Dataset.present())
    if row is None:
        raise _gone()
    return row


async def view(project: Project, row: Dataset) -> DatasetView:
    hex_ids = await _source_hex_ids([row.id])
    return DatasetView(row, project.name, hex_ids[row.id])


async def list_datasets(
    org_id: int, member_id: int | None, after_id: int, limit: int
) -> list[DatasetView]:
    """The organization's datasets, or those of the projects `member_id` is a member of."""
    query = (
        Dataset.select(Dataset, Project.name)
        .join(Project)
        .where(Project.organization == org_id, Dataset.id > after_id)
    )
    if member_id is not None:
        query = query.join(Membership, on=(Membership.project == Project.id)).where(
            Membership.user == member_id
        )
    rows = await database.list(query.order_by(Dataset.id).limit(limit))
    hex_ids = await _source_hex_ids([r.id for r in rows])
    return [DatasetView(r, r.project.name, hex_ids[r.id]) for r in rows]


async def update_dataset(
    dataset: Dataset, changes: dict[str, str], source_ids: Sequence[int] | None
) -> None:
    async with atomic(
        Refers("name", "dataset", Dataset, {dataset.id: dataset.name}),
        Refers("dataset.source_ids", "source", Source, source_ids or (), shown=False),
    ):
        dataset.last_modified = utcnow()
        for field, value in changes.items():
            setattr(dataset, field, value)
        written(
            await database.aexecute(
                Dataset.update(**changes, last_modified=dataset.last_modified).where(
                    Dataset.id == dataset.id, *Dataset.present()
                )
            ),
            Dataset,
        )
        if source_ids is not None and await _link_sources(dataset.id, source_ids):
            # Only a change of the set: a retried update leaves the state of one.
            await database.aexecute(
                Dataset.update(sources_version=Dataset.sources_version + 1).where(
                    Dataset.id == dataset.id
                )
            )


_SOURCES = Sql(f"SELECT s.hex_id, s.id {_BY_ID_WITH_SOURCES}", bounded=True)


async def dataset_sources(dataset_id: int) -> dict[str, int]:
    """hex id -> internal id of the dataset's sources: NOT_FOUND once a concurrent call
    deleted the dataset (then it has none, and a check of a source would answer that
    the source is not the dataset's)."""
    rows = await fetch(_SOURCES, (dataset_id,))
    if not rows:
        raise _gone()
    return {hex_id: source_id for hex_id, source_id in rows if hex_id is not None}


def under(name: str, names: Sequence[str]) -> bool:
    """Whether the label `name` is one of `names` or a descendant of one."""
    return any(name == n or name.startswith(n + LABEL_SEPARATOR) for n in names)


async def lock_taxonomy(dataset_id: int) -> None:
    """Serialize the changes of one dataset's taxonomy (in the caller's transaction; on
    SQLite the transaction already excludes every other writer)."""
    if not is_sqlite():
        await database.list(
            Dataset.select(Dataset.id).where(Dataset.id == dataset_id).for_update().tuples()
        )


async def retired_names(dataset_id: int) -> list[str]:
    """The deleted labels of the dataset whose names are still being pruned."""
    return [name for (name,) in await fetch(_RETIRED, (dataset_id,))]


_RETIRED = Sql("SELECT name FROM label_retired WHERE dataset_id = ?", bounded=True)


async def add_label_defs(dataset_id: int, defs: Sequence[tuple[str, str]]) -> None:
    """Add the labels not in the taxonomy yet. A label still being pruned after its delete
    answers FAILED_PRECONDITION (the new labellings would lose it)."""
    async with atomic(dataset_ref(dataset_id)):
        await lock_taxonomy(dataset_id)
        existing = set(
            await database.list(
                LabelDef.select(LabelDef.name)
                .where(
                    LabelDef.dataset == dataset_id, LabelDef.name.in_([name for name, _ in defs])
                )
                .tuples()
            )
        )
        known = {name for (name,) in existing}
        fresh = [(n, d) for n, d in defs if n not in known]
        retired = await retired_names(dataset_id) if fresh else []
        for name, _ in fresh:
            if under(name, retired):
                raise FailedPrecondition(
                    f"label {name!r} was deleted and is still being removed from the "
                    "dataset's labellings; add it again in a minute",
                    reason=errors_pb2.LABEL_BEING_REMOVED,
                    metadata={"label": name},
                )
        if fresh:
            await database.aexecute(
                LabelDef.insert_many(
                    [
                        {LabelDef.dataset: dataset_id, LabelDef.name: n, LabelDef.description: d}
                        for n, d in fresh
                    ]
                ).on_conflict_ignore()
            )


async def label_defs(dataset_id: int) -> list[tuple[str, str]]:
    return await database.list(
        LabelDef.select(LabelDef.name, LabelDef.description)
        .where(LabelDef.dataset == dataset_id)
        .order_by(LabelDef.name)
        .tuples()
    )


async def label_names(dataset_id: int, names: Sequence[str]) -> set[str]:
    """Those of `names` that are in the dataset's taxonomy."""
    wanted = list(set(names))
    if not wanted:
        return set()
    statement = Sql(
        "SELECT name FROM label_def WHERE dataset_id = ? AND name IN "
        f"({', '.join('?' * len(wanted))})",
        bounded=True,
    )
    return {name for (name,) in await fetch(statement, (dataset_id, *wanted))}


_LABELLING_COLUMNS = "dataset_id, comment_id, assigned, dismissed, updated_at"
_LABELLING_UPSERT_TAIL = (
    " ON CONFLICT (dataset_id, comment_id) DO UPDATE SET assigned = EXCLUDED.assigned, "
    "dismissed = EXCLUDED.dismissed, updated_at = EXCLUDED.updated_at, "
    "change_tx = EXCLUDED.change_tx"
)
# Labellings per statement of a bulk write (5 parameters each).
_WRITE_ROWS = 1024


@functools.lru_cache(maxsize=16)
def _labelling_upsert(rows: int, sqlite: bool) -> Sql:
    return stamped_insert("labelling", _LABELLING_COLUMNS, 5, rows, _LABELLING_UPSERT_TAIL, sqlite)


@functools.lru_cache(maxsize=16)
def _labelling_delete(rows: int, sqlite: bool) -> tuple[Sql, Sql]:
    """The removal of labellings: first each leaves its comment at the delete's position
    (`positions`), then the rows go."""
    marks = ", ".join("?" * rows)
    column, value = stamped(sqlite)
    removed = Sql(
        f"INSERT INTO labelling_removed (dataset_id, comment_id, removed_at{column}) "
        f"SELECT dataset_id, comment_id, ?{value} FROM labelling "
        f"WHERE dataset_id = ? AND comment_id IN ({marks}) "
        "ON CONFLICT (dataset_id, comment_id) DO UPDATE SET "
        "change_tx = EXCLUDED.change_tx, removed_at = EXCLUDED.removed_at"
    )
    delete = Sql(f"DELETE FROM labelling WHERE dataset_id = ? AND comment_id IN ({marks})")
    return removed, delete


async def set_labelling(
    dataset_id: int, comment_id: int, assigned: bytes, dismissed: bytes
) -> datetime.datetime:
    """Replace a comment's labelling; empty lists (b"") remove it. Answers the time it
    is stamped with. (Written out: Peewee renders the upsert slower than SQLite runs it.)"""
    now = utcnow()
    await set_labellings(dataset_id, [(comment_id, assigned, dismissed)], now)
    return now


async def set_labellings(
    dataset_id: int,
    labellings: Sequence[tuple[int, bytes, bytes]],
    now: datetime.datetime,
    field: str = "comment_uid",
) -> None:
    """Replace the labellings (comment id, assigned, dismissed) of distinct comments in
    one transaction (`labelling_writes`). A comment or the dataset deleted meanwhile
    answers NOT_FOUND (the request names the comments by `field`)."""
    stamp = Labelling.updated_at.db_value(now)
    statements = labelling_writes(dataset_id, [(c, a, d, stamp) for c, a, d in labellings])
    guards = (
        dataset_ref(dataset_id),
        Refers(field, "comment", Comment, [c for c, _, _ in labellings], shown=False),
    )
    if len(statements) == 1 and held() is None:
        # One statement is atomic by itself: no BEGIN and COMMIT round trips around it.
        async with guarded(guards, contextlib.nullcontext()):
            await write(*statements[0])
        return
    # In a transaction, a savepoint: the guards look the rows up again once it rolled back.
    async with atomic(*guards):
        for statement, params in statements:
            await write(statement, params)


def labelling_writes(
    dataset_id: int, labellings: Sequence[tuple[int, bytes, bytes, Any]]
) -> list[tuple[Sql, Sequence[Any]]]:
    """The statements replacing the labellings (comment id, assigned, dismissed, time as
    stored) of distinct comments; empty lists remove one. Multi-row statements, so a bulk
    update costs a few statements, not one per comment."""
    upserts: list[Any] = []
    removed: list[int] = []
    for comment_id, assigned, dismissed, stamp in labellings:
        if assigned or dismissed:
            upserts += (dataset_id, comment_id, assigned, dismissed, stamp)
        else:
            removed.append(comment_id)
    step = _WRITE_ROWS * 5
    sqlite = is_sqlite()
    writes: list[tuple[Sql, Sequence[Any]]] = [
        (_labelling_upsert(len(part) // 5, sqlite), part)
        for part in (upserts[start : start + step] for start in range(0, len(upserts), step))
    ]
    # The time is taken only for removals: a plain upsert is the hot path.
    at = LabellingRemoved.removed_at.db_value(utcnow()) if removed else None
    for start in range(0, len(removed), _WRITE_ROWS):
        ids = removed[start : start + _WRITE_ROWS]
        removals, delete = _labelling_delete(len(ids), sqlite)
        writes += [(removals, (at, dataset_id, *ids)), (delete, (dataset_id, *ids))]
    return writes


async def get_labelling(
    dataset_id: int, comment_id: int
) -> tuple[bytes, bytes, datetime.datetime] | None:
    """A comment's labelling as readers see it: without the names of deleted labels still
    being pruned (one statement reads both)."""
    rows = await fetch(_LABELLING, (dataset_id, comment_id))
    if not rows:
        return None
    assigned, dismissed, updated_at, _ = rows[0]
    retired = [row[3] for row in rows if row[3] is not None]
    kept = pruned(bytes(assigned), bytes(dismissed), retired)
    stamp = as_datetime(updated_at)
    if kept is None or stamp is None:
        return None
    return kept[0], kept[1], stamp


_LABELLING = Sql(
    "SELECT l.assigned, l.dismissed, l.updated_at, r.name FROM labelling AS l "
    "LEFT JOIN label_retired AS r ON r.dataset_id = l.dataset_id "
    "WHERE l.dataset_id = ? AND l.comment_id = ?",
    bounded=True,
)


def _without(blob: bytes, names: Sequence[str]) -> bytes:
    """The label list `blob` without `names` and their descendants."""
    if not blob or not any(name.encode() in blob for name in names):
        return blob
    kept = AssignedLabels.FromString(blob)
    remaining = [label for label in kept.assigned if not under(label.name, names)]
    if len(remaining) == len(kept.assigned):
        return blob
    return AssignedLabels(assigned=remaining).SerializeToString() if remaining else b""


def pruned(assigned: bytes, dismissed: bytes, names: Sequence[str]) -> tuple[bytes, bytes] | None:
    """A labelling's lists without the labels `names` and their descendants; None when
    nothing is left (a labelling with empty lists is no labelling)."""
    if not names:
        return assigned, dismissed
    assigned, dismissed = _without(assigned, names), _without(dismissed, names)
    return (assigned, dismissed) if assigned or dismissed else None
