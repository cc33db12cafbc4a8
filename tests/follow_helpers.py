"""Follow streams read in tests: a dataset to follow and a stream read message by message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from corrigo.v1 import datasets_pb2
from tests import dataset_helpers as h
from tests.conftest import Org

# How long a change may take to arrive (in-process commits wake the stream at once).
ARRIVES = 10.0


async def world(org: Org, comments: int = 3) -> tuple[str, str]:
    """A project (its name) with dataset `ds` over source `mailbox` (its hex id) holding
    comments c0.. and the label L."""
    project = await org.project()
    src = await h.source(org.admin, project.name)
    await h.dataset(org.admin, project.name, [src.id])
    await h.sync(
        org.admin, project.name, "mailbox", [h.comment(f"c{i}", i) for i in range(comments)]
    )
    await org.admin.datasets.CreateLabelDefs(h.label_defs(project.name, ["L"]))
    return project.name, src.id


def follow_request(owner: str, **fields: Any) -> datasets_pb2.StreamExportDatasetRequest:
    return datasets_pb2.StreamExportDatasetRequest(owner=owner, name="ds", follow=True, **fields)


class Follower:
    """A follow stream read one message at a time, each within ARRIVES seconds."""

    def __init__(self, org: Org, request: datasets_pb2.StreamExportDatasetRequest) -> None:
        self.call = org.admin.datasets.StreamExportDataset(request)
        self._messages: AsyncIterator[datasets_pb2.StreamExportDatasetResponse] = aiter(self.call)

    async def next(self) -> datasets_pb2.StreamExportDatasetResponse:
        return await asyncio.wait_for(anext(self._messages), ARRIVES)

    async def snapshot(self) -> list[datasets_pb2.StreamExportDatasetResponse]:
        """The snapshot's messages, and the empty live message that marks its end."""
        pages = [await self.next()]
        while not pages[-1].live:
            pages.append(await self.next())
        end = pages.pop()
        assert not end.comments and not end.deleted_uids and end.continuation
        return pages

    async def live(self) -> datasets_pb2.StreamExportDatasetResponse:
        """The next live message that is not a keepalive."""
        while True:
            message = await self.next()
            assert message.live
            if message.comments or message.deleted_uids:
                return message

    def cancel(self) -> None:
        self.call.cancel()
