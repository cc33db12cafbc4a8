"""Conversions between stored naive-UTC datetimes and google.protobuf.Timestamp."""

from __future__ import annotations

import datetime

from google.protobuf import timestamp_pb2


def to_proto(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def from_proto(value: timestamp_pb2.Timestamp) -> datetime.datetime:
    return value.ToDatetime()
