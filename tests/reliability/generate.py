"""Hypothesis strategies that build any request message from its descriptor: wrong and
extreme values, empty and huge strings, invalid enum numbers, deep structs, duplicates."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

INT32 = st.one_of(
    st.sampled_from([0, 1, -1, 2, 255, 256, 1024, 1025, 2**31 - 1, -(2**31)]),
    st.integers(-(2**31), 2**31 - 1),
)
INT64 = st.one_of(INT32, st.sampled_from([2**63 - 1, -(2**63)]))
UINT = st.sampled_from([0, 1, 2**32 - 1])
DOUBLE = st.floats(allow_nan=True, allow_infinity=True)
FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=32)
TEXT = st.one_of(
    st.sampled_from(["", " ", "a", "-", "..", "x" * 65, "a > b", "a >", "\x00", "é" * 3, "%%%"]),
    st.text(max_size=40),
    st.integers(257, 300_000).map(lambda n: "y" * n),
)
# A JSON value nested `depth` deep: far beyond anything a real client sends.
DEEP = st.integers(1, 60).map(lambda depth: _nested(depth))


def _nested(depth: int) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    inner = value
    for _ in range(depth):
        inner = inner.fields["k"].struct_value
    return value


def _struct() -> st.SearchStrategy[struct_pb2.Struct]:
    leaf = st.one_of(st.none(), st.booleans(), DOUBLE, TEXT)
    data = st.dictionaries(st.text(max_size=10), leaf, max_size=5)

    def build(items: dict[str, Any]) -> struct_pb2.Struct:
        value = struct_pb2.Struct()
        for key, item in items.items():
            if isinstance(item, float) and item != item:
                item = 0.0  # Struct cannot hold NaN
            value[key] = item
        return value

    return st.one_of(data.map(build), DEEP)


def _scalar(field: FieldDescriptor, overrides: dict[str, st.SearchStrategy[Any]]) -> Any:
    if field.name in overrides and field.message_type is None:
        return overrides[field.name]
    kind = field.type
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return INT32
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return INT64
    if kind in (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED64,
    ):
        return UINT
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return DOUBLE
    if kind == FieldDescriptor.TYPE_FLOAT:
        return FLOAT
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 40)
    return message(field.message_type, overrides, depth=1)


def message(
    descriptor: Descriptor,
    overrides: dict[str, st.SearchStrategy[Any]] | None = None,
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`; `overrides` gives strategies for fields by name."""
    overrides = overrides or {}
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        return _struct()
    if descriptor.full_name == "google.protobuf.Value":
        return _struct().map(lambda s: struct_pb2.Value(struct_value=s))
    if descriptor.full_name == "google.protobuf.ListValue":
        return st.lists(st.one_of(INT64, TEXT, st.none()), max_size=6).map(_list_value)
    if depth > 3:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = _scalar(field.message_type.fields_by_name["key"], {})
            value_field = field.message_type.fields_by_name["value"]
            value = (
                message(value_field.message_type, overrides, depth + 1)
                if value_field.message_type is not None
                else _scalar(value_field, {})
            )
            fields[field.name] = st.dictionaries(key, value, max_size=4)
        elif field.message_type is not None:
            element = message(field.message_type, overrides, depth + 1)
            fields[field.name] = _maybe_repeated(field, element)
        else:
            fields[field.name] = _maybe_repeated(field, _scalar(field, overrides))
    chosen = st.fixed_dictionaries({}, optional=fields)
    return chosen.map(lambda values: _build(cls, values))


def _maybe_repeated(field: FieldDescriptor, element: st.SearchStrategy[Any]) -> Any:
    if not field.is_repeated:
        return element
    # Lists with a duplicate first element now and then.
    return st.lists(element, max_size=5).flatmap(
        lambda items: st.sampled_from([items, items + items[:1]])
    )


def _list_value(items: list[Any]) -> struct_pb2.ListValue:
    value = struct_pb2.ListValue()
    for item in items:
        value.append(float(item) if isinstance(item, int) else item)
    return value


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    built = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(built, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(built, name, value)
    return built
