"""Records with every field set, made from the descriptors, and their expected JSON.

`full(descriptor)` answers messages that together set every field of the type and of
every message it holds: each message holds every field, and message k sets branch k of
each oneof (a Struct holds every kind of Value). A field added to the protos is set here
without anyone touching this file, so every round trip built on these records covers
it; `differences` names the fields where two records differ.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import descriptor, json_format, message_factory
from google.protobuf.message import Message

from corrigo.client import fields
from corrigo.v1.comments_pb2 import Comment
from corrigo.v1.datasets_pb2 import ExportedComment

_FD = descriptor.FieldDescriptor
# A fixed time with a fraction of a second: timestamps keep their nanos through every writer
# (Parquet keeps microseconds).
_WHEN = datetime.datetime(2021, 3, 4, 5, 6, 7, 890_123, tzinfo=datetime.UTC)
# One Struct value of every kind, nested, with keys out of order.
STRUCT_VALUES: dict[str, Any] = {
    "zeta string": 'Grüße ☃ "q" \\ \n',
    "alpha number": -2.5,
    "mid bool": True,
    "null": None,
    "nested struct": {"y": 1.0, "b": [False, None, "x", {"z": 2.0, "a": "1"}]},
    "list": [3.0, "s", True, None, {"k": "v"}, []],
}
# A field's value, from its path (`Comment.text_format`): fields whose values the server
# checks get a valid one.
Values = dict[str, Callable[[int], Any]]


def _scalar(field: descriptor.FieldDescriptor, index: int) -> Any:
    kind = field.type
    if kind == _FD.TYPE_STRING:
        return f"{field.name}-{index}-ü"
    if kind == _FD.TYPE_BOOL:
        return True
    if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return 0.25 + index
    if kind == _FD.TYPE_BYTES:
        return f"{field.name}-{index}".encode()
    if kind == _FD.TYPE_ENUM:
        return field.enum_type.values[-1].number
    return 7 + index  # the integer types


def _set(message: Message, field: descriptor.FieldDescriptor, index: int, values: Values) -> None:
    path = f"{field.containing_type.name}.{field.name}"
    if path in values:
        value = values[path](index)
        if field.type == _FD.TYPE_MESSAGE and not isinstance(value, Message):
            json_format.ParseDict(value, getattr(message, field.name))
        elif field.is_repeated:
            getattr(message, field.name).extend(value)
        else:
            setattr(message, field.name, value)
        return
    count = 2 if field.is_repeated else 1
    if field.type != _FD.TYPE_MESSAGE:
        items = [_scalar(field, index + i) for i in range(count)]
        if field.is_repeated:
            getattr(message, field.name).extend(items)
        else:
            setattr(message, field.name, items[0])
        return
    for i in range(count):
        made = _message(field.message_type, index + i, values)
        target = getattr(message, field.name)
        (target.add() if field.is_repeated else target).CopyFrom(made)


def _message(message: descriptor.Descriptor, index: int, values: Values) -> Message:
    made: Message = message_factory.GetMessageClass(message)()
    name = message.full_name
    if name == fields.TIMESTAMP:
        made.FromDatetime(_WHEN + datetime.timedelta(days=index))  # type: ignore[attr-defined]
        return made
    if name == fields.STRUCT:
        made.update(STRUCT_VALUES)  # type: ignore[attr-defined]
        return made
    for field in message.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof.fields[index % len(oneof.fields)] is not field:
            continue
        _set(made, field, index, values)
    return made


def _oneof_branches(message: descriptor.Descriptor, seen: set[str] | None = None) -> int:
    """The most branches of any oneof reachable from `message`."""
    seen = set() if seen is None else seen
    seen.add(message.full_name)
    most = max([len(o.fields) for o in message.oneofs] or [1])
    for field in message.fields:
        held = field.message_type.full_name if field.type == _FD.TYPE_MESSAGE else ""
        # (Struct's own oneof is covered by STRUCT_VALUES.)
        if held and held not in seen and not held.startswith("google.protobuf."):
            most = max(most, _oneof_branches(field.message_type, seen))
    return most


def full(message: type[Message], values: Values | None = None) -> list[Message]:
    """Messages of type `message` with every field set, every oneof branch taken by one of
    them; `values` gives the value of the fields it names."""
    count = _oneof_branches(message.DESCRIPTOR)
    return [_message(message.DESCRIPTOR, index, values or {}) for index in range(count)]


def sorted_structs(data: Any, message: descriptor.Descriptor) -> Any:
    """json_format's dict of a message with its Structs' keys sorted, as exports write them."""
    name = message.full_name
    if name in (fields.STRUCT, fields.VALUE, fields.LIST_VALUE):
        return _sorted_json(data)
    if not isinstance(data, dict) or name.startswith("google.protobuf."):
        return data
    made = {}
    for key, value in data.items():
        field = message.fields_by_name[key]
        if field.type != _FD.TYPE_MESSAGE:
            made[key] = value
        elif field.is_repeated:
            made[key] = [sorted_structs(item, field.message_type) for item in value]
        else:
            made[key] = sorted_structs(value, field.message_type)
    return made


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(item) for item in value]
    return value


def reference(message: Message) -> dict[str, Any]:
    """What the export writes of `message`: json_format's dict, Struct keys sorted."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return sorted_structs(data, message.DESCRIPTOR)  # type: ignore[no-any-return]


def paths(message: Message, prefix: str = "") -> Iterator[str]:
    """The path of every field set in `message` and the messages it holds."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        yield path
        if field.type == _FD.TYPE_MESSAGE and not field.message_type.full_name.startswith(
            "google.protobuf."
        ):
            for item in value if field.is_repeated else [value]:
                yield from paths(item, path + ".")


def leaf_paths(message: descriptor.Descriptor, prefix: str = "") -> Iterator[str]:
    """The path of every field below `message` that holds no message of ours (a scalar, a
    Timestamp, a Struct), from the descriptors."""
    for field in message.fields:
        path = f"{prefix}{field.name}"
        if fields.kind(field) == fields.MESSAGE:
            yield from leaf_paths(fields.held(field), path + ".")
        else:
            yield path


def only(message: Message, path: str) -> Message:
    """A copy of `message` holding only the field at `path` (and what leads to it)."""
    made = type(message)()
    name, _, rest = path.partition(".")
    field = message.DESCRIPTOR.fields_by_name[name]
    value = getattr(message, name)
    if not rest:
        made.MergeFrom(type(message)(**{name: value}))
    elif field.is_repeated:
        getattr(made, name).extend(only(item, rest) for item in value)
    else:
        getattr(made, name).CopyFrom(only(value, rest))
    return made


def differences(expected: Message, got: Message) -> list[str]:
    """The paths of the fields whose values differ (sorted, without repeats)."""
    one = json_format.MessageToDict(expected, preserving_proto_field_name=True)
    two = json_format.MessageToDict(got, preserving_proto_field_name=True)
    return sorted(set(_differ(one, two, "")))


def _differ(one: Any, two: Any, path: str) -> Iterator[str]:
    if isinstance(one, dict) and isinstance(two, dict):
        for key in one.keys() | two.keys():
            yield from _differ(one.get(key), two.get(key), f"{path}.{key}" if path else key)
    elif isinstance(one, list) and isinstance(two, list) and len(one) == len(two):
        for a, b in zip(one, two, strict=True):
            yield from _differ(a, b, path)
    elif one != two:
        yield path


def synced_values() -> Values:
    """Values the server accepts for the fields it checks, as a sync must send them."""
    return {
        "Comment.id": lambda index: f"full-{index}",
        "Comment.text_format": lambda index: "markdown",
        "Comment.user_properties": lambda index: {"string:Name ü": "x", "number:Size": 2.5},
        "CommentMessage.language": lambda index: "de-CH",
        "Label.sentiment": lambda index: "positive",
        "Label.name": lambda index: "Full > Label",
        "PredictedLabel.name": lambda index: "Full > Label",
        "PredictedLabel.probability": lambda index: 0.75,
        "PredictedLabel.sentiment": lambda index: -0.5,
    }


def full_results() -> list[ExportedComment]:
    """Export results with every field set (as test_records' corpus, through the wire)."""
    made = full(ExportedComment)
    return [ExportedComment.FromString(m.SerializeToString()) for m in made]


def full_comment() -> Comment:
    """A comment with every field set to a value a sync accepts."""
    made = full(Comment, synced_values())[0]
    assert isinstance(made, Comment)
    return made
