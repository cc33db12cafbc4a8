"""The Corrigo Python client.

    from corrigo.client import Client
    with Client() as corrigo:          # CORRIGO_TARGET, CORRIGO_TOKEN
        print(corrigo.admin.WhoAmI(admin_pb2.WhoAmIRequest()))

Stubs are the generated ones (typed by their .pyi); every call carries the token,
idempotent calls are retried on UNAVAILABLE, and every failed call, unary or
streaming, raises `CorrigoError` with the status details decoded.
"""

from __future__ import annotations

from types import TracebackType

import grpc

from corrigo.client.channel import TokenInterceptor, async_channel, resolve, sync_channel
from corrigo.client.errors import CorrigoError
from corrigo.v1 import (
    admin_pb2_grpc,
    correction_pb2_grpc,
    datasets_pb2_grpc,
    improvement_pb2_grpc,
    models_pb2_grpc,
    practice_pb2_grpc,
    sources_pb2_grpc,
)

__all__ = ["AsyncClient", "Client", "CorrigoError"]


class _Services:
    """The ten service stubs on one channel, as Client and AsyncClient offer them."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.catalog = practice_pb2_grpc.PracticeCatalogServiceStub(channel)
        self.examples = practice_pb2_grpc.FewShotExampleServiceStub(channel)
        self.practice = practice_pb2_grpc.PracticeSessionServiceStub(channel)
        self.improvement = improvement_pb2_grpc.ImprovementServiceStub(channel)
        self.sources = sources_pb2_grpc.SourceServiceStub(channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        self.models = models_pb2_grpc.ModelServiceStub(channel)
        self.corrections = correction_pb2_grpc.CorrectionSessionServiceStub(channel)
        self.document_groups = correction_pb2_grpc.DocumentGroupServiceStub(channel)


class Client(_Services):
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
        super().__init__(self.channel)

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


class AsyncClient(_Services):
    """The asyncio client: `async with AsyncClient() as corrigo: await corrigo.admin...`."""

    # On a grpc.aio channel the generated stubs are their asyncio variants (the .pyi's
    # `__new__` overloads say so, but grpc itself is untyped, so mypy needs telling).
    admin: admin_pb2_grpc.AdminServiceAsyncStub
    catalog: practice_pb2_grpc.PracticeCatalogServiceAsyncStub
    examples: practice_pb2_grpc.FewShotExampleServiceAsyncStub
    practice: practice_pb2_grpc.PracticeSessionServiceAsyncStub
    improvement: improvement_pb2_grpc.ImprovementServiceAsyncStub
    sources: sources_pb2_grpc.SourceServiceAsyncStub
    datasets: datasets_pb2_grpc.DatasetServiceAsyncStub
    models: models_pb2_grpc.ModelServiceAsyncStub
    corrections: correction_pb2_grpc.CorrectionSessionServiceAsyncStub
    document_groups: correction_pb2_grpc.DocumentGroupServiceAsyncStub

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
        super().__init__(self.channel)

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
