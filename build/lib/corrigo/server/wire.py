"""Protobuf wire-format assembly for the export's hot path.

A page of exported comments is made of stored, already serialized messages (the
comment, its assigned labels, its predictions). Concatenating their bytes under the
right field tags and parsing the result once in C is several times faster than
building each message field by field in Python, and yields the very same message.
"""

from __future__ import annotations

_LEN = 2  # wire type of length-delimited fields
_VARINT = 0


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a sub-message, string or bytes)."""
    return tag(number, _LEN) + varint(len(payload)) + payload


def true_flag(number: int) -> bytes:
    """A bool field set to true."""
    return tag(number, _VARINT) + b"\x01"
