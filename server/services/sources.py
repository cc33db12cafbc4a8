"""SourceService: sources, comment sync (unary and bulk streaming), comments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from corrigo.server.api import auth, pagination
from corrigo.server.api.errors import InvalidArgument
from corrigo.server.api.fieldmask import fields_to_write
from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import Violations
from corrigo.server.domain import comment_input, purge_work
from corrigo.server.ops import metrics
from corrigo.server.store import sources
from corrigo.server.store.projects import Project
from corrigo.v1 import sources_pb2, sources_pb2_grpc
from corrigo.v1.comments_pb2 import Comment
from corrigo.v1.sources_pb2 import Source

_OK = "ok"
_UPDATABLE = ("title", "description")


def source_proto(project: Project, row: sources.Source) -> Source:
    return Source(
        id=row.hex_id,
        owner=project.name,
        name=row.name,
        title=row.title,
        description=row.description,
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
    )


def _check_source_fields(checks: Violations, source: Source) -> None:
    checks.text("source.title", source.title, 256)
    checks.text("source.description", source.description, 4096)


async def _named_source(request_name: str) -> tuple[Project, sources.Source]:
    checks = Violations()
    checks.name("name", request_name)
    checks.raise_if_any()
    project = auth.project()
    return project, await sources.get_source(project, request_name)


class SourceService(sources_pb2_grpc.SourceServiceServicer):
    async def CreateSource(
        self, request: sources_pb2.CreateSourceRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.SourceResponse:
        checks = Violations()
        checks.name("name", request.name)
        _check_source_fields(checks, request.source)
        checks.raise_if_any()
        project = auth.project()
        row = await sources.create_source(
            project, request.name, request.source.title, request.source.description
        )
        return sources_pb2.SourceResponse(source=source_proto(project, row), status=_OK)

    async def GetSource(
        self, request: sources_pb2.GetSourceRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.SourceResponse:
        project, row = await _named_source(request.name)
        return sources_pb2.SourceResponse(source=source_proto(project, row), status=_OK)

    async def ListSources(
        self, request: sources_pb2.ListSourcesRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.ListSourcesResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=100, maximum=1000)
        checks.raise_if_any()
        project = auth.project()
        rows = await sources.list_sources(project.id, page.after(), page.fetch)
        rows, token = page.finish(rows, lambda r: r.id)
        return sources_pb2.ListSourcesResponse(
            sources=[source_proto(project, r) for r in rows], next_page_token=token, status=_OK
        )

    async def UpdateSource(
        self, request: sources_pb2.UpdateSourceRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.SourceResponse:
        checks = Violations()
        writes = fields_to_write(request.update_mask, request.source, _UPDATABLE, checks)
        _check_source_fields(checks, request.source)
        checks.raise_if_any()
        project, row = await _named_source(request.name)
        row = await sources.update_source(
            row, {name: getattr(request.source, name) for name in writes}
        )
        return sources_pb2.SourceResponse(source=source_proto(project, row), status=_OK)

    async def DeleteSource(
        self, request: sources_pb2.DeleteSourceRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.DeleteSourceResponse:
        _, row = await _named_source(request.name)
        await purge_work.delete_source(row.id)
        return sources_pb2.DeleteSourceResponse(status=_OK)

    async def SyncComments(
        self, request: sources_pb2.SyncCommentsRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.SyncCommentsResponse:
        comment_input.check_count("comments", request.comments)
        _, row = await _named_source(request.name)
        counts = await _sync(row, request.comments)
        return sources_pb2.SyncCommentsResponse(
            new=counts.new, updated=counts.updated, unchanged=counts.unchanged, status=_OK
        )

    async def StreamSyncComments(
        self,
        request_iterator: AsyncIterator[sources_pb2.StreamSyncCommentsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[sources_pb2.StreamSyncCommentsResponse]:
        source: sources.Source | None = None
        owner = name = ""
        async for chunk in request_iterator:
            if source is None:
                source = await _first_source(chunk)
                owner, name = chunk.owner, chunk.name
            elif (chunk.owner or owner, chunk.name or name) != (owner, name):
                raise InvalidArgument.field(
                    "owner", "every chunk must name the first chunk's source, or none"
                )
            comment_input.check_count("comments", chunk.comments)
            counts = await _sync(source, chunk.comments)
            yield sources_pb2.StreamSyncCommentsResponse(
                chunk=chunk.chunk,
                new=counts.new,
                updated=counts.updated,
                unchanged=counts.unchanged,
            )

    async def GetComment(
        self, request: sources_pb2.GetCommentRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.GetCommentResponse:
        checks = Violations()
        checks.check(
            bool(comment_input.COMMENT_ID.match(request.comment_id)),
            "comment_id",
            "required: 1..256 letters, digits or '-_.:=+/@'",
        )
        checks.raise_if_any()
        _, row = await _named_source(request.name)
        comment = await sources.get_comment(row, request.comment_id)
        return sources_pb2.GetCommentResponse(comment=comment, status=_OK)

    async def DeleteComments(
        self, request: sources_pb2.DeleteCommentsRequest, context: grpc.aio.ServicerContext
    ) -> sources_pb2.DeleteCommentsResponse:
        checks = Violations()
        if checks.count("ids", request.ids, sources.MAX_SYNC, "ids"):
            for i, comment_id in enumerate(request.ids):
                checks.check(
                    bool(comment_input.COMMENT_ID.match(comment_id)),
                    f"ids[{i}]",
                    "must be 1..256 letters, digits or '-_.:=+/@'",
                )
        checks.raise_if_any()
        _, row = await _named_source(request.name)
        deleted = await sources.delete_comments(row, list(request.ids))
        return sources_pb2.DeleteCommentsResponse(deleted=deleted, status=_OK)


async def _sync(source: sources.Source, comments: Sequence[Comment]) -> sources.SyncCounts:
    """Write `comments` (counted already), checking them while they are written."""
    parts = comment_input.checked_parts("comments", comments, sources.SYNC_PART)
    counts = await sources.sync(source, [c.id for c in comments], parts)
    metrics.comments_synced(counts.new, counts.updated, counts.unchanged)
    return counts


async def _first_source(chunk: sources_pb2.StreamSyncCommentsRequest) -> sources.Source:
    """The bulk sync's source, named by its first chunk (whose project the call's rule
    checked before the handler ran)."""
    checks = Violations()
    checks.name("name", chunk.name)
    checks.raise_if_any()
    return await sources.get_source(auth.project(), chunk.name)
