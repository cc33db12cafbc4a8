"""Exported comments as JSON, and back, without `json_format`.

`exported_lines` writes `json.dumps(json_format.MessageToDict(result,
preserving_proto_field_name=True), ensure_ascii=False, separators=(",", ":"))` for each
ExportedComment (the proto3 JSON mapping: fields in number order, defaults left out,
timestamps as RFC 3339), but with every Struct's keys sorted, so that exports are
byte-stable: it builds that dict from the message's descriptor (`message_writer`) and
orjson writes it, because the generic printer costs several times more per comment.
`page_lines` writes the same lines in C (export_json.c) from a page's bytes where that
extension is built, several times faster again. `struct_dict` and `timestamp_text`
serve Parquet and the batch export too.
`comment_from_dict` is the way back for `corrigo sync` and `corrigo import`: it builds
the message directly (`message_arguments`, from the descriptor too), and hands anything
it does not recognize to `json_format` so that errors read as they always did.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson
from google.protobuf import descriptor, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from corrigo.client import fields
from corrigo.v1.comments_pb2 import Comment
from corrigo.v1.datasets_pb2 import ExportedComment, StreamExportDatasetResponse

_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
# Timestamp's valid range (0001-01-01 .. 9999-12-31), in seconds since the epoch.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
# "YYYY-MM-DDTHH:" of each hour met (hours since the epoch), and every "MM:SS".
_hours: dict[int, str] = {}
_MINUTE_SECOND = [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]

# One encoder for every line: `json.dumps` with these options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
encode = _ENCODER.encode
_float_text = float.__repr__


def timestamp_text(stamp: timestamp_pb2.Timestamp) -> str:
    """`Timestamp.ToJsonString`, with each hour's date and hour formatted once."""
    seconds, nanos = stamp.seconds, stamp.nanos
    hour, rest = divmod(seconds, 3600)
    prefix = _hours.get(hour)
    if prefix is None:
        if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
            return stamp.ToJsonString()  # raises as json_format does
        prefix = (_EPOCH + datetime.timedelta(hours=hour)).isoformat()[:14]
        if len(_hours) < 100_000:
            _hours[hour] = prefix
    if not nanos:
        return prefix + _MINUTE_SECOND[rest] + "Z"
    if not 0 < nanos < 1_000_000_000:
        return stamp.ToJsonString()  # raises as json_format does
    if not nanos % 1_000_000:
        fraction = f"{nanos // 1_000_000:03d}"
    elif not nanos % 1_000:
        fraction = f"{nanos // 1_000:06d}"
    else:
        fraction = f"{nanos:09d}"
    return prefix + _MINUTE_SECOND[rest] + "." + fraction + "Z"


def _plain(number: float) -> Any:
    return number


def _exact(number: float) -> Any:
    """A finite double for orjson, written as `repr` writes it: orjson's own text is the
    same from 1e-4 to 1e16 (and for zero), and elsewhere writes exponents its own way
    (1e-5 where `json` writes 1e-05)."""
    if 1e-4 <= abs(number) < 1e16 or not number:
        return number
    return orjson.Fragment(_float_text(number))


# How a finite double is written: a float (for `json`), or `_exact` (for orjson).
Number = Callable[[float], Any]


def _value(value: struct_pb2.Value, number: Number) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        found = value.number_value
        if math.isinf(found) or math.isnan(found):
            return json_format.MessageToDict(value)  # raises as json_format does
        return number(found)
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_dict(value.struct_value, number)
    if kind == "list_value":
        return [_value(item, number) for item in value.list_value.values]
    return None


def struct_dict(struct: struct_pb2.Struct, number: Number = _plain) -> dict[str, Any]:
    """A Struct's JSON object, its keys sorted: the map's own order of iteration (which
    json_format keeps) is seeded per process, and exports must be byte-stable."""
    fields = struct.fields
    # Indexing the map is twice as fast as its items() view, which iterates in Python.
    return {key: _value(fields[key], number) for key in sorted(fields)}


def _double(value: float) -> Any:
    """A double's JSON value for orjson: non-finite ones are strings in the proto3 mapping."""
    if math.isfinite(value):
        return _exact(value)
    return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")


# JSONL lines: each result as the dict json_format would make of it, written by orjson.
# The fields come from the message's descriptor: `ListFields` (in C) answers the fields
# json_format writes, in number order, and each is converted by its field's converter.

# A field's JSON value from its Python value.
Convert = Callable[[Any], Any]
_FD = descriptor.FieldDescriptor
_SAME = (
    _FD.TYPE_STRING,
    _FD.TYPE_BOOL,
    _FD.TYPE_INT32,
    _FD.TYPE_SINT32,
    _FD.TYPE_SFIXED32,
    _FD.TYPE_UINT32,
    _FD.TYPE_FIXED32,
)
# 64-bit integers are strings in the proto3 JSON mapping.
_TEXT = (_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64, _FD.TYPE_UINT64, _FD.TYPE_FIXED64)


class UnsupportedField(TypeError):
    """A field whose type the export's writers do not write (yet): named, so that a new
    field of such a type fails loudly instead of leaving the export."""

    def __init__(self, field: descriptor.FieldDescriptor) -> None:
        super().__init__(f"{field.full_name}: the export cannot write fields of this type")


def _enum_name(enum: descriptor.EnumDescriptor) -> Convert:
    names = {number: value.name for number, value in enum.values_by_number.items()}
    return lambda number: names.get(number, number)


def _bytes_text(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _sorted_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return struct_dict(struct, _exact)


def _list_value(values: struct_pb2.ListValue) -> list[Any]:
    return [_value(item, _exact) for item in values.values]


def _item_value(value: struct_pb2.Value) -> Any:
    return _value(value, _exact)


_WELL_KNOWN: dict[str, Convert] = {
    fields.TIMESTAMP: timestamp_text,
    fields.STRUCT: _sorted_struct,
    fields.VALUE: _item_value,
    fields.LIST_VALUE: _list_value,
}


def _one(field: descriptor.FieldDescriptor) -> Convert | None:
    """The converter of one value of `field` (None: the value is its JSON value)."""
    kind = fields.kind(field)
    if kind == fields.MESSAGE:
        return message_writer(fields.held(field))
    if kind in _WELL_KNOWN:
        return _WELL_KNOWN[kind]
    if kind != fields.SCALAR:
        raise UnsupportedField(field)  # maps, wrappers, Any, ...: none is exported yet
    if field.type in _SAME:
        return None
    if field.type in _TEXT:
        return str
    if field.type == _FD.TYPE_DOUBLE:
        return _double
    if field.type == _FD.TYPE_ENUM and field.enum_type is not None:
        return _enum_name(field.enum_type)
    if field.type == _FD.TYPE_BYTES:
        return _bytes_text
    raise UnsupportedField(field)  # float: json_format's shortest float32 text


def _converter(field: descriptor.FieldDescriptor) -> Convert | None:
    one = _one(field)
    if not field.is_repeated:
        return one
    if one is None:
        return _copied  # slicing copies a repeated scalar five times faster than list()
    return lambda values: [one(value) for value in values]


def _copied(values: Any) -> list[Any]:
    return values[:]


_writers: dict[str, Callable[[Message], dict[str, Any]]] = {}


def message_writer(message: descriptor.Descriptor) -> Callable[[Message], dict[str, Any]]:
    """`json_format.MessageToDict(m, preserving_proto_field_name=True)` of messages of this
    type, but for Struct keys (sorted, so exports are byte-stable) and doubles (written by
    orjson as `repr` writes them); UnsupportedField names a field it cannot write."""
    made = _writers.get(message.full_name)
    if made is not None:
        return made
    # Each field's name and converter (None: the value is written as it is), by its
    # descriptor, which upb keeps one of per field.
    names: dict[descriptor.FieldDescriptor, str] = {}
    converters: dict[descriptor.FieldDescriptor, Convert | None] = {}

    def write(m: Message) -> dict[str, Any]:
        return {
            names[f]: v if (convert := converters[f]) is None else convert(v)
            for f, v in m.ListFields()
        }

    _writers[message.full_name] = write  # before the fields: a message may hold its own type
    for field in message.fields:
        names[field] = field.name
        converters[field] = _converter(field)
    return write


_exported_dict = message_writer(ExportedComment.DESCRIPTOR)


def exported_lines(results: Iterable[ExportedComment]) -> bytes:
    """`corrigo export`'s JSONL lines of `results`: each
    `json.dumps(json_format.MessageToDict(result, preserving_proto_field_name=True),
    ensure_ascii=False, separators=(",", ":"))` with Struct keys sorted, in UTF-8, and a
    newline."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join([dumps(_exported_dict(r), option=newline) for r in results])


def _compiled() -> Callable[[bytes], bytes | None] | None:
    try:
        from corrigo.client.export_json import exported_lines as compiled
    except ImportError:  # built without a C compiler: the Python writer serves alone
        return None
    return compiled


# The same lines written in C from a page's bytes (client/export_json.c), when built.
compiled_lines = _compiled()


def page_lines(page: StreamExportDatasetResponse) -> bytes:
    """`exported_lines(page.comments)`, written in C where the extension is built and
    knows every field the page holds: reading fields through the protobuf objects is
    what costs Python most (the page, received parsed, is serialized again for it)."""
    if compiled_lines is not None:
        lines = compiled_lines(page.SerializeToString())
        if lines is not None:
            return lines
    return exported_lines(page.comments)


# The lines of a followed export (`corrigo export --follow`) that are not comments: a
# deleted comment, and a reset (the lines before it no longer hold: the dataset's
# comments come again). The readers of export files (`corrigo sync`, `corrigo import`)
# skip them.
DELETED_UID = "deleted_uid"
RESET = "reset"
RESET_LINE = orjson.dumps({RESET: True}, option=orjson.OPT_APPEND_NEWLINE)


def deleted_lines(uids: Iterable[str]) -> bytes:
    """A line `{"deleted_uid": uid}` for each of `uids`."""
    return b"".join(
        orjson.dumps({DELETED_UID: uid}, option=orjson.OPT_APPEND_NEWLINE) for uid in uids
    )


def is_follow_line(value: Any) -> bool:
    """Whether a JSONL line's value is a followed export's deleted comment or reset."""
    return isinstance(value, dict) and (value.keys() == {DELETED_UID} or value == {RESET: True})


def exported_line(result: ExportedComment) -> str:
    """One line of `exported_lines`, without its newline."""
    return orjson.dumps(_exported_dict(result)).decode()


# Parsing: JSON objects back into messages.


def loads(line: bytes) -> Any:
    """A JSONL line's value, as `json.loads(line.decode("utf-8"))` answers and raises
    (but for an integer beyond 64 bits, read as a float). orjson parses it where it can
    (twice as fast); what orjson refuses (NaN, a byte order mark, a blank line, any
    error) goes to `json`, so errors read as they always did."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8"))


class _Generic(Exception):
    """The fast path met a shape it leaves to json_format (and to its error messages)."""


# RFC 3339 in UTC as `corrigo export` writes it; other forms take FromJsonString's way.
_UTC_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d{1,9}))?Z")
# Days since the epoch of each date met ("YYYY-MM-DD").
_dates: dict[str, int] = {}


def _time(text: Any) -> dict[str, int]:
    """A Timestamp's fields from RFC 3339 text in UTC, as `corrigo export` writes it (other
    forms take json_format's way, without strptime for the common one)."""
    if not isinstance(text, str):
        raise _Generic
    match = _UTC_TIME.fullmatch(text)
    if match is None:
        raise _Generic
    date, hours, minutes, seconds, fraction = match.groups()
    days = _dates.get(date)
    if days is None:
        days = datetime.date.fromisoformat(date).toordinal() - _EPOCH_ORDINAL
        if len(_dates) < 100_000:
            _dates[date] = days
    made = {"seconds": days * 86_400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)}
    if fraction:
        made["nanos"] = int(fraction) * 10 ** (9 - len(fraction))
    return made


# A field's constructor argument from its JSON value; _Generic for shapes left to json_format.
Argument = Callable[[Any], Any]


def _checked(kind: type) -> Argument:
    def check(value: Any) -> Any:
        # The constructor would take a number for a boolean, a string for a list of its
        # characters: json_format refuses those, and is left to.
        if not isinstance(value, kind):
            raise _Generic
        return value

    return check


def _argument(field: descriptor.FieldDescriptor) -> Argument | None:
    """How one JSON value of `field` becomes its constructor argument (None: as it is, the
    constructor checks it)."""
    kind = fields.kind(field)
    if kind == fields.SCALAR:
        return _checked(bool) if field.type == _FD.TYPE_BOOL else None
    if kind == fields.MESSAGE:
        read = message_arguments(fields.held(field))
        return None if fields.held(field).full_name in _taken_as_they_are else read
    if kind == fields.TIMESTAMP:
        return _time
    if kind == fields.STRUCT:
        return _checked(dict)
    return _generic


def _generic(value: Any) -> Any:
    raise _Generic


def _repeated(one: Argument | None) -> Argument:
    def items(values: Any) -> Any:
        if not isinstance(values, list):
            raise _Generic
        return values if one is None else [one(value) for value in values]

    return items


_readers: dict[str, Callable[[Any], dict[str, Any]]] = {}
# The messages whose JSON objects the constructor takes as they are (no field of theirs is
# converted or checked: the constructor refuses unknown keys and values of other types).
_taken_as_they_are: set[str] = set()


def message_arguments(message: descriptor.Descriptor) -> Callable[[Any], dict[str, Any]]:
    """The constructor arguments of a message of this type from its JSON object, for the
    shapes `corrigo export` writes (proto field names); _Generic for anything else (JSON
    names, unknown keys, values the constructor would take and json_format would not)."""
    made = _readers.get(message.full_name)
    if made is not None:
        return made
    names: set[str] = set()
    # The fields whose values are converted or checked; the others go as they are.
    arguments: dict[str, Argument] = {}

    def read(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not data.keys() <= names:
            raise _Generic
        made = data
        for key, argument in arguments.items():
            value = data.get(key)
            if value is not None:
                if made is data:
                    made = dict(data)  # (the caller's object is left as it was)
                made[key] = argument(value)
        return made

    _readers[message.full_name] = read  # before the fields: a message may hold its own type
    for field in message.fields:
        names.add(field.name)
        one = _argument(field)
        if field.is_repeated:
            arguments[field.name] = _repeated(one)
        elif one is not None:
            arguments[field.name] = one
    if not arguments:
        _taken_as_they_are.add(message.full_name)
    return read


# A message class.
Parsed = TypeVar("Parsed", bound=Message)


def message_from_dict(
    data: Any, message: type[Parsed], *, ignore_unknown_fields: bool = False
) -> Parsed:
    """`json_format.ParseDict(data, message(), ignore_unknown_fields=...)`, built directly
    for the shapes `corrigo export` writes; other shapes (and every error) go through
    json_format itself, so they parse and fail exactly as they always did."""
    try:
        return message(**message_arguments(fields.descriptor_of(message))(data))
    except (_Generic, ValueError, TypeError):
        return json_format.ParseDict(data, message(), ignore_unknown_fields=ignore_unknown_fields)


def comment_from_dict(data: dict[str, Any]) -> Comment:
    """A Comment from its JSON object, fields it does not have ignored."""
    return message_from_dict(data, Comment, ignore_unknown_fields=True)
