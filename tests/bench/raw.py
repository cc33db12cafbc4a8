"""Calls with pre-serialized requests and unparsed answers.

The client shares the machine with the server, so the benchmark's client does as
little as it can: requests are serialized before the clock starts, and answers are
not parsed, only walked for their top-level fields (to count comments and pick up
continuations).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from corrigo.client.channel import MAX_MESSAGE_BYTES

OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# A channel with a connection of its own (grpc shares one per target in a process), so
# that channels reach the workers of `--workers N` as separate clients would.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
Metadata = Sequence[tuple[str, str]]

GET_DATASET = "/corrigo.v1.DatasetService/GetDataset"
EXPORT = "/corrigo.v1.DatasetService/ExportDataset"
STREAM_EXPORT = "/corrigo.v1.DatasetService/StreamExportDataset"
SYNC = "/corrigo.v1.SourceService/SyncComments"
STREAM_SYNC = "/corrigo.v1.SourceService/StreamSyncComments"
UPDATE_LABELLING = "/corrigo.v1.DatasetService/UpdateLabelling"
STREAM_LABELLINGS = "/corrigo.v1.DatasetService/StreamUpdateLabellings"
UPLOAD_PREDICTIONS = "/corrigo.v1.ModelService/UploadPredictions"
STREAM_BATCH = "/corrigo.v1.ImprovementService/StreamBatchSessions"
HEALTH = "/grpc.health.v1.Health/Check"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of each top-level field: bytes for length-delimited
    fields, int for varints."""
    at, end = 0, len(data)
    while at < end:
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 2:
            size, at = _varint(data, at)
            yield number, data[at : at + size]
            at += size
        elif wire_type == 0:
            value, at = _varint(data, at)
            yield number, value
        else:
            raise ValueError(f"unexpected wire type {wire_type}")


def _skim_type() -> Any:
    """A message type that reads an export page's comments as opaque bytes: parsed in C
    without building the comments (the client stays cheap beside the server)."""
    file = descriptor_pb2.FileDescriptorProto(name="bench_skim.proto", package="bench")
    page = file.message_type.add(name="PageSkim")
    label = descriptor_pb2.FieldDescriptorProto
    page.field.add(name="comments", number=1, type=label.TYPE_BYTES, label=label.LABEL_REPEATED)
    page.field.add(name="continuation", number=2, type=label.TYPE_STRING)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.PageSkim"))


_PageSkim = _skim_type()


def page_summary(data: bytes) -> tuple[int, str]:
    """(number of comments, continuation) of an export page."""
    page = _PageSkim.FromString(data)
    return len(page.comments), page.continuation


def unary(channel: grpc.Channel, method: str, request: bytes, metadata: Metadata) -> bytes:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    answer: bytes = call(request, metadata=metadata, timeout=600)
    return answer


def stream(channel: grpc.Channel, method: str, request: bytes, metadata: Metadata) -> Any:
    call = channel.unary_stream(method, request_serializer=None, response_deserializer=None)
    return call(request, metadata=metadata, timeout=600)


def stream_sync(
    channel: grpc.Channel, chunks: Iterable[bytes], metadata: Metadata, method: str = STREAM_SYNC
) -> int:
    """Send every chunk of a bulk stream (a sync, or labellings with `method`); answers
    how many were acknowledged."""
    call = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
    return sum(1 for _ in call(iter(chunks), metadata=metadata, timeout=600))
