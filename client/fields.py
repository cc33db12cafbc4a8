"""What the protos say of a message's fields, read from the generated descriptors.

Writers, readers and checks take their field lists from here rather than writing them
out, so that a field added to the protos reaches all of them: which fields the server
sets (googleapis' `field_behavior` OUTPUT_ONLY) or requires (REQUIRED), and what kind of
value a field holds.
"""

from __future__ import annotations

from typing import cast

from google.api import field_behavior_pb2
from google.protobuf import descriptor
from google.protobuf.message import Message

_FD = descriptor.FieldDescriptor
# What `kind` answers for a field of one of our messages, for a map, and for a scalar.
MESSAGE = "message"
MAP = "map"
SCALAR = "scalar"
# What `kind` answers for the well-known types the records use.
TIMESTAMP = "google.protobuf.Timestamp"
STRUCT = "google.protobuf.Struct"
VALUE = "google.protobuf.Value"
LIST_VALUE = "google.protobuf.ListValue"
Fields = tuple[descriptor.FieldDescriptor, ...]


def descriptor_of(message: Message | type[Message]) -> descriptor.Descriptor:
    """A message's (or message class's) descriptor, as the stubs type descriptors."""
    return cast(descriptor.Descriptor, message.DESCRIPTOR)


def _with(message: descriptor.Descriptor, behavior: int) -> Fields:
    options = field_behavior_pb2.field_behavior
    return tuple(f for f in message.fields if behavior in f.GetOptions().Extensions[options])


def output_only(message: descriptor.Descriptor) -> Fields:
    """The fields the server sets (OUTPUT_ONLY): a request's values for them are ignored."""
    return _with(message, field_behavior_pb2.OUTPUT_ONLY)


def required(message: descriptor.Descriptor) -> Fields:
    """The fields a request must set (REQUIRED)."""
    return _with(message, field_behavior_pb2.REQUIRED)


def clear_output_only(message: Message) -> None:
    """Clears the fields the server sets: a request that carries them is taken without."""
    for field in output_only(descriptor_of(message)):
        message.ClearField(field.name)


class Held:
    """Which of `fields` a message holds: present, or (a field without presence) not its
    default. What it needs of each descriptor is read once, here, not at every message:
    a sync asks of every comment. (Plain loops: a generator costs more than the tests.)"""

    def __init__(self, fields: Fields) -> None:
        self._fields = tuple((f.name, f.has_presence) for f in fields)
        self._present = tuple(f.name for f in fields if f.has_presence)
        self._valued = tuple(f.name for f in fields if not f.has_presence)

    def missing(self, message: Message) -> list[str]:
        """The names of the fields `message` does not hold, in the fields' order."""
        names = []
        for name, presence in self._fields:
            if presence:
                if not message.HasField(name):
                    names.append(name)
            elif not getattr(message, name):
                names.append(name)
        return names

    def any(self, message: Message) -> bool:
        """Whether `message` holds one of the fields."""
        for name in self._present:
            if message.HasField(name):
                return True
        for name in self._valued:  # noqa: SIM110 (a loop: see the class)
            if getattr(message, name):
                return True
        return False


def held(field: descriptor.FieldDescriptor) -> descriptor.Descriptor:
    """The message type of a message field."""
    message = field.message_type
    if message is None:
        raise TypeError(f"{field.full_name} holds no message")
    return message


def kind(field: descriptor.FieldDescriptor) -> str:
    """SCALAR, MESSAGE (one of ours), MAP, or a well-known type's full name
    (`google.protobuf.Timestamp`)."""
    if field.type != _FD.TYPE_MESSAGE:
        return SCALAR
    message = held(field)
    if message.GetOptions().map_entry:
        return MAP
    if message.full_name.startswith("google.protobuf."):
        return message.full_name
    return MESSAGE
