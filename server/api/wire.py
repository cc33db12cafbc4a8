"""Protobuf wire-format assembly for the export's hot path.

A page of exported comments is made of stored, already serialized messages (the
comment, its assigned labels, its predictions). Writing their bytes under the right
field tags yields the very same message as building it field by field, and costs a
few list appends per comment: the page's parts are joined once, and never parsed.
"""

from __future__ import annotations

_LEN = 2  # wire type of length-delimited fields
_VARINT = 0
# The varints of every length below 16 KiB, precomputed: most fields are that short.
_SMALL = 1 << 14
_VARINTS = [bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(_SMALL)]


def varint(value: int) -> bytes:
    if value < _SMALL:
        return _VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def field_tag(number: int) -> bytes:
    """The tag of a length-delimited field."""
    return tag(number, _LEN)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a sub-message, string or bytes)."""
    return field_tag(number) + varint(len(payload)) + payload


def true_flag(number: int) -> bytes:
    """A bool field set to true."""
    return tag(number, _VARINT) + b"\x01"


def int_field(number: int, value: int) -> bytes:
    """A non-negative integer field (int32/int64)."""
    return tag(number, _VARINT) + varint(value)
