"""Stored naive-UTC datetimes as google.protobuf.Timestamp."""

from __future__ import annotations

import datetime

from google.protobuf import timestamp_pb2

_EPOCH = datetime.datetime(1970, 1, 1)


def to_proto(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    """As Timestamp.FromDatetime (naive means UTC), in a few integer operations."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
    )
