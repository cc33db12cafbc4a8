"""Registering a service, with RPCs that may answer with already serialized bytes.

The export builds its pages from stored, serialized messages (see `wire`). Parsing a
page into a message only for gRPC to serialize it again costs as much as everything
else the export does, so the RPCs named in `raw` hand gRPC the bytes themselves: their
serializer passes bytes through (and still serializes a message, for errors' sake).
Everything else is registered as the generated `add_*Servicer_to_server` would.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_HANDLERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def serialize_or_pass(answer: Message | bytes) -> bytes:
    """The answer as bytes: as it is when already serialized."""
    if isinstance(answer, bytes):
        return answer
    return answer.SerializeToString()


def raw_answer(answer_type: type[M], serialized: bytes) -> M:
    """An answer of `answer_type` already serialized, as a handler of an RPC registered
    raw returns it: gRPC is handed the bytes as they are (typed as the message, which the
    servicer's signature names)."""
    return cast(M, serialized)


def register(
    servicer: Any, server: grpc.aio.Server, service: ServiceDescriptor, raw: Collection[str] = ()
) -> None:
    """Register `servicer`'s methods for `service`; those named in `raw` may answer bytes."""
    unknown = set(raw) - {method.name for method in service.methods}
    if unknown:
        raise ValueError(f"{service.full_name} has no method {sorted(unknown)}")
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        make = _HANDLERS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request.FromString,
            response_serializer=serialize_or_pass
            if method.name in raw
            else response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
