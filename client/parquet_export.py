"""`corrigo export --format parquet`: one row per comment, nested columns for messages,
assigned labels and predictions, written with pyarrow (the `corrigo[parquet]` extra).

Columns are gathered page by page as plain lists and become one row group per batch of
pages (`ROWS_PER_GROUP` comments or more). A Parquet file's index is written when it is
closed, so an interrupted file cannot be read: each row group is written as a part file
beside the output, and the resume state records the parts complete and the continuation
after the last one. When the export ends, the parts are joined into the output, one row
group each, and removed.
"""

from __future__ import annotations

import json
import operator
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Never

from google.protobuf import descriptor
from tqdm import tqdm

from corrigo.client import fields, records
from corrigo.v1 import datasets_pb2
from corrigo.v1.comments_pb2 import Comment

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # the extra is not installed: the command says how to get it
    pa = pq = None

ROWS_PER_GROUP = 65_536
# A row is the comment's fields, then these repeated messages of the result beside them
# (column: the path of the field below ExportedComment).
LISTS = {"assigned": "annotations.labels.assigned", "predictions": "predictions.labels"}
_FD = descriptor.FieldDescriptor
# A field's value in a row, from the message holding it.
Get = Callable[[Any], Any]


def _wrapper(message: descriptor.Descriptor) -> bool:
    """A message of one field (MessageText) is stored as that field's value, null when the
    message is absent (as the JSON tells an absent subject from an empty one)."""
    return len(message.fields) == 1 and not message.fields[0].is_repeated


def _scalar_type(field: descriptor.FieldDescriptor) -> Any:
    types = {
        _FD.TYPE_STRING: pa.string(),
        _FD.TYPE_BOOL: pa.bool_(),
        _FD.TYPE_DOUBLE: pa.float64(),
        _FD.TYPE_FLOAT: pa.float32(),
        _FD.TYPE_INT32: pa.int32(),
        _FD.TYPE_INT64: pa.int64(),
        _FD.TYPE_UINT32: pa.uint32(),
        _FD.TYPE_UINT64: pa.uint64(),
        _FD.TYPE_BYTES: pa.binary(),
        _FD.TYPE_ENUM: pa.string(),  # the value's name
    }
    if field.type not in types:
        raise records.UnsupportedField(field)
    return types[field.type]


def _type(field: descriptor.FieldDescriptor) -> Any:
    """The Arrow type of a field's column, from its descriptor."""
    kind = fields.kind(field)
    if kind == fields.SCALAR:
        made = _scalar_type(field)
    elif kind == fields.TIMESTAMP:
        made = pa.timestamp("us", tz="UTC")
    elif kind == fields.STRUCT:
        made = pa.string()  # its JSON object, keys sorted, as in the JSONL export
    elif kind == fields.MESSAGE and _wrapper(held := fields.held(field)):
        made = _type(held.fields[0])
    elif kind == fields.MESSAGE:
        made = pa.struct([(f.name, _type(f)) for f in held.fields])
    else:
        raise records.UnsupportedField(field)
    return pa.list_(made) if field.is_repeated else made


def _path(path: str) -> list[descriptor.FieldDescriptor]:
    """The fields along a path below ExportedComment."""
    message, made = datasets_pb2.ExportedComment.DESCRIPTOR, []
    for name in path.split("."):
        field = message.fields_by_name[name]
        made.append(field)
        if fields.kind(field) == fields.MESSAGE:
            message = fields.held(field)
    return made


def _comment_fields() -> list[descriptor.FieldDescriptor]:
    return list(Comment.DESCRIPTOR.fields)


def _schema() -> Any:
    columns = [(f.name, _type(f)) for f in _comment_fields()]
    columns += [(name, _type(_path(path)[-1])) for name, path in LISTS.items()]
    return pa.schema(columns)


def _micros(stamp: Any) -> int:
    return int(stamp.seconds * 1_000_000 + stamp.nanos // 1000)


def _struct_text(struct: Any) -> str:
    return records.encode(records.struct_dict(struct))


def _one(field: descriptor.FieldDescriptor) -> Get | None:
    """How one value of `field` becomes its cell (None: as it is)."""
    kind = fields.kind(field)
    if kind == fields.TIMESTAMP:
        return _micros
    if kind == fields.STRUCT:
        return _struct_text
    if kind == fields.MESSAGE:
        return _row(fields.held(field))
    if field.type == _FD.TYPE_ENUM and field.enum_type is not None:
        names = {n: v.name for n, v in field.enum_type.values_by_number.items()}
        return lambda number: names.get(number, str(number))
    return None


def _getter(field: descriptor.FieldDescriptor) -> Get:
    """A field's cell from the message holding it: null for an absent message (but a
    Struct, an empty object as in the JSONL)."""
    name, one = field.name, _one(field)
    if field.is_repeated:
        return lambda m: (
            list(getattr(m, name)) if one is None else [one(v) for v in getattr(m, name)]
        )
    if one is None:
        return operator.attrgetter(name)
    if field.has_presence and fields.kind(field) != fields.STRUCT:
        return lambda m: one(getattr(m, name)) if m.HasField(name) else None
    return lambda m: one(getattr(m, name))


def _row(message: descriptor.Descriptor) -> Get:
    """A message's cell: a dict of its fields, or a wrapper's one value."""
    getters = [(f.name, _getter(f)) for f in message.fields]
    if _wrapper(message):
        return getters[0][1]
    return lambda m: {name: get(m) for name, get in getters}


def _put(message: Any, field: descriptor.FieldDescriptor, value: Any) -> None:
    """Sets `field` of `message` from its cell, as `_getter` made it (None: absent)."""
    if value is None:
        return
    kind = fields.kind(field)
    target = getattr(message, field.name)
    for item in value if field.is_repeated else [value]:
        if kind != fields.SCALAR:
            _put_message(target.add() if field.is_repeated else target, kind, item)
            continue
        if field.type == _FD.TYPE_ENUM and field.enum_type is not None:
            item = field.enum_type.values_by_name[item].number
        if field.is_repeated:
            target.append(item)
        else:
            setattr(message, field.name, item)


def _put_message(message: Any, kind: str, cell: Any) -> None:
    if kind == fields.TIMESTAMP:
        message.FromDatetime(cell)
    elif kind == fields.STRUCT:
        if properties := json.loads(cell):
            message.update(properties)
    else:
        message.SetInParent()
        own = message.DESCRIPTOR
        if _wrapper(own):
            _put(message, own.fields[0], cell)
        else:
            for field in own.fields:
                _put(message, field, cell.get(field.name))


def result_from_row(row: dict[str, Any]) -> datasets_pb2.ExportedComment:
    """The export result a row (as pyarrow reads it back) was written from."""
    made = datasets_pb2.ExportedComment()
    _put_message(made.comment, fields.MESSAGE, row)
    for column, path in LISTS.items():
        *steps, last = _path(path)
        holder: Any = made
        for step in steps:
            holder = getattr(holder, step.name)
            holder.SetInParent()  # the server sends them with every result, empty or not
        _put(holder, last, row[column])
    return made


class _Columns:
    """One row group's columns, as Python lists."""

    def __init__(self) -> None:
        self.rows = 0
        self.values: dict[str, list[Any]] = {name: [] for name in _schema().names}
        self.cells = [(self.values[f.name].append, _getter(f)) for f in _comment_fields()]
        self.lists = [
            (name, path.split("."), _one(_path(path)[-1])) for name, path in LISTS.items()
        ]

    def add_page(self, page: datasets_pb2.StreamExportDatasetResponse) -> None:
        v = self.values
        for result in page.comments:
            comment = result.comment
            for append, get in self.cells:
                append(get(comment))
            for name, steps, one in self.lists:
                items: Any = result
                for step in steps:
                    items = getattr(items, step)
                v[name].append([one(item) for item in items] if one else list(items))
        self.rows += len(page.comments)

    def table(self) -> Any:
        schema = _schema()
        return pa.Table.from_arrays(
            [pa.array(self.values[f.name], type=f.type) for f in schema], schema=schema
        )


def _parts(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def export_parquet(
    pages: Iterator[datasets_pb2.StreamExportDatasetResponse],
    output: Path,
    state: dict[str, Any] | None,
    save_state: Callable[[str, int, int], None],
    bar: tqdm[Never],
) -> int:
    """The export of `pages` into `output` as Parquet, resuming from `state` (the parts
    complete and the continuation after them); `save_state(continuation, written, parts)`
    records a part once it is complete. Answers how many comments the file holds."""
    if pa is None:
        raise SystemExit(
            "corrigo export: --format parquet needs pyarrow: pip install 'corrigo[parquet]'"
        )
    parts_dir = _parts(output)
    if state is None:
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts, written = 0, 0
    else:
        parts, written = int(state["parts"]), int(state["written"])
        for stale in parts_dir.glob("*.parquet"):
            if int(stale.stem) >= parts:
                stale.unlink()  # a part begun after the last recorded one
    parts_dir.mkdir(exist_ok=True)
    columns = _Columns()

    def flush(continuation: str) -> None:
        nonlocal columns, parts
        pq.write_table(columns.table(), parts_dir / f"{parts:06d}.parquet")
        parts += 1
        save_state(continuation, written, parts)
        columns = _Columns()

    for page in pages:
        if page.total:
            bar.total = written + page.total
        columns.add_page(page)
        written += len(page.comments)
        bar.update(len(page.comments))
        if page.continuation and columns.rows >= ROWS_PER_GROUP:
            flush(page.continuation)
    if columns.rows or not parts:
        pq.write_table(columns.table(), parts_dir / f"{parts:06d}.parquet")
        parts += 1
    scratch = output.with_name(output.name + ".tmp")
    with pq.ParquetWriter(scratch, _schema()) as writer:
        for number in range(parts):
            writer.write_table(pq.read_table(parts_dir / f"{number:06d}.parquet"))
    scratch.replace(output)
    shutil.rmtree(parts_dir)
    return written
