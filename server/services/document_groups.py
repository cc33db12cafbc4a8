"""DocumentGroupService: saved sets of a project's documents to sample sessions from."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from corrigo.server.api import auth, pagination
from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import Violations
from corrigo.server.domain import documents, lookups
from corrigo.server.store import document_groups, sources
from corrigo.server.store.document_groups import DocumentGroup, GroupView
from corrigo.v1 import correction_pb2, correction_pb2_grpc

MAX_NAME = 256


def group_proto(view: GroupView, uids: list[str] | None = None) -> correction_pb2.DocumentGroup:
    row = view.row
    return correction_pb2.DocumentGroup(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        document_uids=uids or [],
        document_count=view.document_count,
        user_id=row.user_id,
        created=to_proto(row.created),
    )


async def _group(request: Any) -> DocumentGroup:
    """The request's group (`group_id`) in the authorized project."""
    return await lookups.by_id("group_id", request.group_id, "document group", document_groups.find)


class DocumentGroupService(correction_pb2_grpc.DocumentGroupServiceServicer):
    async def CreateDocumentGroup(
        self,
        request: correction_pb2.CreateDocumentGroupRequest,
        context: grpc.aio.ServicerContext,
    ) -> correction_pb2.DocumentGroup:
        checks = Violations()
        checks.text("name", request.name, MAX_NAME)
        checks.check(bool(request.document_uids), "document_uids", "at least one document")
        checks.raise_if_any()
        project = auth.project()
        allowed = await sources.sources_by_hex(
            project.id, [uid.partition(".")[0] for uid in request.document_uids]
        )
        comment_ids = await documents.resolve(
            checks, "document_uids", request.document_uids, allowed, f"project {project.name!r}"
        )
        checks.raise_if_any()
        view = await document_groups.create(
            project.id, auth.current().principal.user_id, request.name, comment_ids
        )
        return group_proto(view, list(request.document_uids))

    async def GetDocumentGroup(
        self, request: correction_pb2.GetDocumentGroupRequest, context: grpc.aio.ServicerContext
    ) -> correction_pb2.DocumentGroup:
        row = await _group(request)
        return group_proto(await document_groups.view(row), await document_groups.uids(row.id))

    async def ListDocumentGroups(
        self,
        request: correction_pb2.ListDocumentGroupsRequest,
        context: grpc.aio.ServicerContext,
    ) -> correction_pb2.ListDocumentGroupsResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=50, maximum=500)
        checks.raise_if_any()
        views = await document_groups.list_groups(auth.project().id, page.after(), page.fetch)
        views, token = page.finish(views, lambda v: v.row.id)
        return correction_pb2.ListDocumentGroupsResponse(
            groups=[group_proto(v) for v in views], next_page_token=token
        )

    async def DeleteDocumentGroup(
        self, request: correction_pb2.DeleteDocumentGroupRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        row = await _group(request)
        await document_groups.delete(row)
        return empty_pb2.Empty()
