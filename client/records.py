"""Exported comments as JSON, and back, without `json_format`.

`exported_lines` writes exactly `json.dumps(json_format.MessageToDict(result,
preserving_proto_field_name=True), ensure_ascii=False, separators=(",", ":"))` for each
ExportedComment (the proto3 JSON mapping: fields in number order, defaults left out,
timestamps as RFC 3339): it builds that dict field by field and orjson writes it,
because the generic printer costs several times more per comment. `page_lines` writes
the same lines in C (export_json.c) from a page's bytes where that extension is built,
several times faster again. `struct_dict` and `timestamp_text` serve Parquet and the
batch export too.
`comment_from_dict` is the way back for `corrigo sync` and `corrigo import`: it builds
the message directly, and hands anything it does not recognize to `json_format` so that
errors read as they always did.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from corrigo.v1.comments_pb2 import (
    Comment,
    CommentMessage,
    Label,
    PredictedLabel,
)
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
    """A Struct's JSON object, its keys in the map's own order (as json_format's)."""
    fields = struct.fields
    # Indexing the map is twice as fast as its items() view, which iterates in Python.
    return {key: _value(fields[key], number) for key in fields}


def _double(value: float) -> Any:
    """A double's JSON value for orjson: non-finite ones are strings in the proto3 mapping."""
    if math.isfinite(value):
        return _exact(value)
    return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")


def _set(value: float) -> bool:
    """Whether a proto3 double is written: anything but +0.0 (-0.0 is a set value)."""
    return bool(value) or math.copysign(1.0, value) < 0


def _label_dict(label: Label) -> dict[str, str]:
    made = {}
    if name := label.name:
        made["name"] = name
    if sentiment := label.sentiment:
        made["sentiment"] = sentiment
    return made


def _predicted_dict(label: PredictedLabel) -> dict[str, Any]:
    made: dict[str, Any] = {}
    if name := label.name:
        made["name"] = name
    if _set(probability := label.probability):
        made["probability"] = _double(probability)
    if _set(sentiment := label.sentiment):
        made["sentiment"] = _double(sentiment)
    return made


# JSONL lines: each result as the dict json_format would make of it, written by orjson.
# Each field is read once (a read costs about 100 ns) and repeated strings are copied by
# slicing, which is five times faster than list().


def _message_dict(message: CommentMessage) -> dict[str, Any]:
    made: dict[str, Any] = {}
    # A text implies its part is set: HasField is asked only of empty ones.
    if text := message.subject.text:
        made["subject"] = {"text": text}
    elif message.HasField("subject"):
        made["subject"] = {}
    if text := message.body.text:
        made["body"] = {"text": text}
    elif message.HasField("body"):
        made["body"] = {}
    if sender := getattr(message, "from"):
        made["from"] = sender
    if to := message.to:
        made["to"] = to[:]
    if cc := message.cc:
        made["cc"] = cc[:]
    if bcc := message.bcc:
        made["bcc"] = bcc[:]
    if message.HasField("sent_at"):
        made["sent_at"] = timestamp_text(message.sent_at)
    if language := message.language:
        made["language"] = language
    return made


def _comment_dict(comment: Comment) -> dict[str, Any]:
    made: dict[str, Any] = {}
    if value := comment.id:
        made["id"] = value
    if value := comment.uid:
        made["uid"] = value
    if value := comment.source_id:
        made["source_id"] = value
    if comment.HasField("timestamp"):
        made["timestamp"] = timestamp_text(comment.timestamp)
    if value := comment.thread_id:
        made["thread_id"] = value
    if messages := comment.messages:
        made["messages"] = [_message_dict(m) for m in messages]
    if comment.HasField("user_properties"):
        made["user_properties"] = struct_dict(comment.user_properties, _exact)
    if value := comment.text_format:
        made["text_format"] = value
    if comment.HasField("created_at"):
        made["created_at"] = timestamp_text(comment.created_at)
    if comment.HasField("last_modified"):
        made["last_modified"] = timestamp_text(comment.last_modified)
    if value := comment.context:
        made["context"] = value
    if comment.has_annotations:
        made["has_annotations"] = True
    return made


def _exported_dict(result: ExportedComment) -> dict[str, Any]:
    made: dict[str, Any] = {}
    if result.HasField("comment"):
        made["comment"] = _comment_dict(result.comment)
    if result.HasField("annotations"):
        annotations = result.annotations
        if not annotations.HasField("labels"):
            made["annotations"] = {}
        elif assigned := annotations.labels.assigned:
            made["annotations"] = {"labels": {"assigned": [_label_dict(a) for a in assigned]}}
        else:
            made["annotations"] = {"labels": {}}
    if result.HasField("predictions"):
        if predicted := result.predictions.labels:
            labels = [_predicted_dict(p) for p in predicted]
            made["predictions"] = {"labels": labels}
        else:
            made["predictions"] = {}
    return made


def exported_lines(results: Iterable[ExportedComment]) -> bytes:
    """`corrigo export`'s JSONL lines of `results`: each exactly
    `json.dumps(json_format.MessageToDict(result, preserving_proto_field_name=True),
    ensure_ascii=False, separators=(",", ":"))`, in UTF-8, and a newline."""
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
    what costs Python most. The page is serialized again here, because protobuf writes
    a map's entries in its own order of iteration (last to first), which is the order
    json_format gives them."""
    if compiled_lines is not None:
        lines = compiled_lines(page.SerializeToString())
        if lines is not None:
            return lines
    return exported_lines(page.comments)


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


_COMMENT_STRINGS = ("id", "uid", "source_id", "thread_id", "text_format", "context")
_COMMENT_TIMES = ("timestamp", "created_at", "last_modified")
_COMMENT_KEYS = frozenset(
    (*_COMMENT_STRINGS, *_COMMENT_TIMES, "messages", "user_properties", "has_annotations")
)
_MESSAGE_KEYS = frozenset(("subject", "body", "from", "to", "cc", "bcc", "sent_at", "language"))


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
    fields = {"seconds": days * 86_400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)}
    if fraction:
        fields["nanos"] = int(fraction) * 10 ** (9 - len(fraction))
    return fields


def _message_fields(data: Any) -> dict[str, Any]:
    """A CommentMessage's constructor arguments from its JSON object."""
    if not isinstance(data, dict) or not data.keys() <= _MESSAGE_KEYS:
        raise _Generic
    for field in ("to", "cc", "bcc"):
        values = data.get(field)
        # The constructor would take a string for a list of its characters.
        if values is not None and not isinstance(values, list):
            raise _Generic
    sent_at = data.get("sent_at")
    if sent_at is None:
        return data
    return {**data, "sent_at": _time(sent_at)}


def _fast_comment(data: dict[str, Any]) -> Comment:
    """The Comment built by its constructor (in C) from the JSON object; the constructor
    raises TypeError or ValueError for what it cannot take. Other keys (the JSON names
    `threadId`, ..., or unknown ones) and looser inputs it would accept (a number for a
    boolean) take json_format's way."""
    if not data.keys() <= _COMMENT_KEYS:
        raise _Generic
    fields = dict(data)
    for name in _COMMENT_TIMES:
        value = fields.get(name)
        if value is not None:
            fields[name] = _time(value)
    messages = fields.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise _Generic
        fields["messages"] = [_message_fields(m) for m in messages]
    properties = fields.get("user_properties")
    if properties is not None and not isinstance(properties, dict):
        raise _Generic
    annotated = fields.get("has_annotations")
    if annotated is not None and not isinstance(annotated, bool):
        raise _Generic
    return Comment(**fields)


def comment_from_dict(data: dict[str, Any]) -> Comment:
    """`json_format.ParseDict(data, Comment(), ignore_unknown_fields=True)`, built directly
    for the shapes `corrigo export` writes; other shapes (and every error) go through
    json_format itself, so they parse and fail exactly as they always did."""
    try:
        return _fast_comment(data)
    except (_Generic, ValueError, TypeError):
        return json_format.ParseDict(data, Comment(), ignore_unknown_fields=True)
