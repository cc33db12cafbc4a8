"""Server reflection that also resolves method names.

protobuf's Python descriptor pool finds messages and services by name but not methods,
so `grpcurl describe corrigo.v1.AdminService.WhoAmI` would fail with the stock
servicer. This pool answers a method with the file of its service.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection


class _MethodAwarePool:
    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise
            return service.file


def enable(service_names: list[str], server: grpc.aio.Server) -> None:
    reflection.enable_server_reflection(
        [*service_names, reflection.SERVICE_NAME], server, pool=_MethodAwarePool()
    )
