"""The Corrigo Python client.

    from corrigo.client import Client
    with Client() as corrigo:          # CORRIGO_TARGET, CORRIGO_TOKEN
        print(corrigo.admin.WhoAmI(admin_pb2.WhoAmIRequest()))

Stubs are the generated ones (typed by their .pyi); every call carries the token,
idempotent calls are retried on UNAVAILABLE, and failed unary calls raise
`CorrigoError` with the status details decoded.
"""

from __future__ import annotations

from types import TracebackType

import grpc

from corrigo.client.channel import TokenInterceptor, async_channel, resolve, sync_channel
from corrigo.client.errors import CorrigoError
from corrigo.v1 import (
    admin_pb2_grpc,
    datasets_pb2_grpc,
    improvement_pb2_grpc,
    models_pb2_grpc,
    practice_pb2_grpc,
    sources_pb2_grpc,
)

__all__ = ["AsyncClient", "Client", "CorrigoError"]


class Client:
    """A blocking client. Pass `channel` to use one you built (tests, custom credentials)."""

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target, self.token = resolve(target, token)
        self._base = channel or sync_channel(self.target, root_certificates, tls)
        self.channel = grpc.intercept_channel(self._base, TokenInterceptor(self.token))
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.catalog = practice_pb2_grpc.PracticeCatalogServiceStub(self.channel)
        self.examples = practice_pb2_grpc.FewShotExampleServiceStub(self.channel)
        self.practice = practice_pb2_grpc.PracticeSessionServiceStub(self.channel)
        self.improvement = improvement_pb2_grpc.ImprovementServiceStub(self.channel)
        self.sources = sources_pb2_grpc.SourceServiceStub(self.channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self._base.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """The asyncio client: `async with AsyncClient() as corrigo: await corrigo.admin...`."""

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
    ) -> None:
        self.target, self.token = resolve(target, token)
        self.channel = async_channel(self.target, self.token, root_certificates, tls)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.catalog = practice_pb2_grpc.PracticeCatalogServiceStub(self.channel)
        self.examples = practice_pb2_grpc.FewShotExampleServiceStub(self.channel)
        self.practice = practice_pb2_grpc.PracticeSessionServiceStub(self.channel)
        self.improvement = improvement_pb2_grpc.ImprovementServiceStub(self.channel)
        self.sources = sources_pb2_grpc.SourceServiceStub(self.channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
