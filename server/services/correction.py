"""CorrectionSessionService: correction sessions, their documents and corrections, and
the watch of a session's changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from corrigo.server.api import auth, pagination, request_ids
from corrigo.server.api.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from corrigo.server.api.timestamps import to_proto
from corrigo.server.api.validation import MAX_ID, Violations
from corrigo.server.domain import correction_work, documents, labels, lookups
from corrigo.server.store import (
    correction,
    correction_documents,
    correction_sampling,
    datasets,
    document_groups,
    ml_models,
)
from corrigo.server.store.correction import CorrectionChange, NewSession, SessionView, Status
from corrigo.server.store.correction_documents import DocumentRow
from corrigo.v1 import correction_pb2, correction_pb2_grpc, errors_pb2
from corrigo.v1.comments_pb2 import AssignedLabels, Comment, Label, Predictions
from corrigo.v1.correction_pb2 import (
    CorrectionSession,
    CorrectionSessionChange,
    CreateCorrectionSessionRequest,
    ModelSummary,
    SessionDocument,
)
from corrigo.v1.models_pb2 import Model

DEFAULT_SAMPLE_SIZE = 100
MAX_SAMPLE_SIZE = 1000
MAX_NAME = 256
MAX_DESCRIPTION = 4096
# Initial metadata naming the HTTP status the REST gateway (server/gateway) answers with,
# and the status CreateCorrectionSession names (`make gen` writes it into the OpenAPI).
HTTP_CODE_HEADER = "x-http-code"
CREATED_HTTP_STATUS = 201
# How often a watch reads the session's version while nothing is new: the bound on how
# late a watcher hears of a change made by any replica.
WATCH_POLL_SECONDS = 0.2
_WATCH_BATCH = 100
# A page of documents holds fewer than page_size when they would pass this many bytes.
_DOCUMENT_PAGE_BYTES = 2 * 1024 * 1024
_STRATEGIES = {
    v.number: v.name
    for v in CreateCorrectionSessionRequest.DESCRIPTOR.enum_types_by_name["Strategy"].values
    if v.number
}
_STATUSES = {
    v.number: v.name for v in CorrectionSession.DESCRIPTOR.enum_types_by_name["Status"].values
}
_ENDS = (Status.FINISHED, Status.FAILED)
_CLASS_TYPES = (Model.CLASS, Model.CLASSLABEL)


def session_proto(view: SessionView) -> CorrectionSession:
    row, model = view.row, view.model
    classes, label_names = ml_models.names_of(model)
    return CorrectionSession(
        created=to_proto(row.created),
        finished=to_proto(row.finished),
        document_count=row.document_count,
        document_group_id=row.document_group_id or 0,
        organization_id=row.organization_id,
        user_id=row.user_id,
        project_id=row.project_id,
        uuid=row.uuid,
        id=row.id,
        name=row.name,
        progress=row.progress,
        model=ModelSummary(id=model.id, display_name=model.display_name),
        status=CorrectionSession.Status.ValueType(row.status),
        mode=CorrectionSession.CORRECTION,
        type=Model.Type.ValueType(model.type),
        description=row.description,
        classes=classes,
        labels=label_names,
        predicted_score=row.predicted_score,
        failure_reason=row.failure_reason,
    )


def change_proto(view: SessionView, change: CorrectionChange) -> CorrectionSessionChange:
    """The session as of `change`: its status, progress, document count and finished
    then; everything else as it is now."""
    session = session_proto(view)
    session.status = CorrectionSession.Status.ValueType(change.status)
    session.progress = change.progress
    session.document_count = change.document_count
    session.ClearField("finished")
    if change.status == Status.FINISHED:
        session.finished.FromDatetime(change.at)
    if change.status != Status.FAILED:
        session.failure_reason = ""
    return CorrectionSessionChange(
        version=change.version, changed_at=to_proto(change.at), session=session
    )


def _labels(blob: bytes | None) -> Sequence[Label]:
    return AssignedLabels.FromString(blob).assigned if blob else []


def document_proto(row: DocumentRow) -> SessionDocument:
    comment = Comment.FromString(row.body)
    return SessionDocument(
        uid=comment.uid,
        comment=comment,
        predictions=Predictions.FromString(row.predicted or b""),
        assigned=_labels(row.assigned),
        dismissed=_labels(row.dismissed),
        corrected=row.corrected_at is not None,
        corrected_at=to_proto(row.corrected_at),
    )


async def _session(request: Any) -> SessionView:
    """The request's session (`session_id`) in the authorized project."""
    return await lookups.by_id(
        "session_id", request.session_id, "correction session", correction.get
    )


def _check_create(checks: Violations, request: CreateCorrectionSessionRequest) -> int:
    """The request's own checks; answers the sample size."""
    checks.check(
        1 <= request.model_id <= MAX_ID, "model_id", f"required: >= 1, got {request.model_id}"
    )
    sample_size = DEFAULT_SAMPLE_SIZE
    if request.HasField("sample_size"):
        sample_size = request.sample_size.value
        checks.check(
            1 <= sample_size <= MAX_SAMPLE_SIZE,
            "sample_size",
            f"must be 1..{MAX_SAMPLE_SIZE}, got {sample_size}",
        )
    checks.text("name", request.name, MAX_NAME)
    checks.text("description", request.description, MAX_DESCRIPTION)
    if request.strategy:
        checks.enum("strategy", request.strategy, _STRATEGIES)
    checks.check(
        0 <= request.document_group_id <= MAX_ID,
        "document_group_id",
        f"must be >= 1 when given, got {request.document_group_id}",
    )
    if request.document_uids and request.document_group_id:
        checks.add("document_group_id", "give document_uids or document_group_id, not both")
    return sample_size


def _check_vocabulary(
    checks: Violations, view: SessionView, request: correction_pb2.SubmitCorrectionRequest
) -> None:
    """Corrections use the model's classes and labels (when it lists any), at most one
    class per document."""
    classes, label_names = ml_models.names_of(view.model)
    vocabulary = set(classes) | set(label_names)
    refused = {field for field, _ in checks.items}
    for field, given in (("assigned", request.assigned), ("dismissed", request.dismissed)):
        for i, label in enumerate(given):
            at = f"{field}[{i}].name"
            checks.check(
                not vocabulary or label.name in vocabulary or at in refused,
                at,
                f"{label.name!r} is not one of the model's classes or labels",
            )
    if view.model.type in _CLASS_TYPES:
        chosen = [label.name for label in request.assigned if label.name in classes]
        checks.check(
            len(chosen) <= 1, "assigned", f"at most one of the model's classes, got {chosen}"
        )


class CorrectionSessionService(correction_pb2_grpc.CorrectionSessionServiceServicer):
    async def CreateCorrectionSession(
        self,
        request: CreateCorrectionSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> CorrectionSession:
        checks = Violations()
        sample_size = _check_create(checks, request)
        checks.raise_if_any()
        project = auth.project()
        model = await correction.find_model(project.id, request.model_id)
        if model is None:
            raise NotFound(
                f"model {request.model_id} not found in project {project.name!r}",
                metadata={"field": "model_id"},
            )
        scope: correction_sampling.Scope = None
        candidates = None
        if request.document_uids:
            allowed = await datasets.dataset_sources(model.dataset_id)
            candidates = await documents.resolve(
                checks, "document_uids", request.document_uids, allowed, "the model's dataset"
            )
            checks.raise_if_any()
            scope = candidates
        elif request.document_group_id:
            group = await document_groups.find(project.id, request.document_group_id)
            if group is None:
                raise NotFound(
                    f"document group {request.document_group_id} not found",
                    metadata={"field": "document_group_id"},
                )
            scope = document_groups.members(group.id)
        available = await correction_sampling.availability(
            project.id, model.dataset_id, scope, sample_size
        )
        if not available.pooled:
            raise FailedPrecondition(
                "the model's dataset holds none of the documents to sample from",
                reason=errors_pb2.NO_CANDIDATE_DOCUMENTS,
            )
        if not available.unannotated:
            raise Aborted("all documents are annotated", reason=errors_pb2.ALL_DOCUMENTS_ANNOTATED)
        if not available.free:
            raise Aborted(
                "every unannotated document is in another open correction session",
                reason=errors_pb2.DOCUMENTS_IN_OPEN_SESSIONS,
            )
        principal = auth.current().principal
        row = await correction.create(
            NewSession(
                organization_id=project.organization_id,
                project_id=project.id,
                user_id=principal.user_id,
                model=model,
                document_group_id=request.document_group_id or None,
                strategy=request.strategy or CreateCorrectionSessionRequest.RANDOM,
                sample_size=sample_size,
                name=request.name,
                description=request.description,
                planned=available.free,
            ),
            candidates,
            correction_work.replica(),
        )
        answer = session_proto(SessionView(row, model))
        await request_ids.after_commit(lambda: correction_work.launch(row.id))
        # The gateway turns this header into the HTTP status the document lists for a create.
        await context.send_initial_metadata(((HTTP_CODE_HEADER, str(CREATED_HTTP_STATUS)),))
        return answer

    async def GetCorrectionSession(
        self, request: correction_pb2.GetCorrectionSessionRequest, context: grpc.aio.ServicerContext
    ) -> CorrectionSession:
        return session_proto(await _session(request))

    async def ListCorrectionSessions(
        self,
        request: correction_pb2.ListCorrectionSessionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> correction_pb2.ListCorrectionSessionsResponse:
        checks = Violations()
        checks.enum("status", request.status, _STATUSES)
        page = pagination.page(request, checks, default=50, maximum=500)
        checks.raise_if_any()
        views = await correction.list_sessions(
            auth.project().id, request.status, page.after(), page.fetch
        )
        views, token = page.finish(views, lambda v: v.row.id)
        return correction_pb2.ListCorrectionSessionsResponse(
            sessions=[session_proto(v) for v in views], next_page_token=token
        )

    async def DeleteCorrectionSession(
        self,
        request: correction_pb2.DeleteCorrectionSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> CorrectionSession:
        view = await _session(request)
        deleting = await correction.mark_deleting(view.row.project_id, view.row.id)
        if deleting is None:
            raise NotFound(f"correction session {view.row.id} not found")
        answer = session_proto(SessionView(deleting, view.model))
        # Another server may be preparing it: that one deletes it, else this one.
        if await correction.take_lease(view.row.id, correction_work.replica()):
            await correction_work.launch(view.row.id)
        return answer

    async def ListSessionDocuments(
        self,
        request: correction_pb2.ListSessionDocumentsRequest,
        context: grpc.aio.ServicerContext,
    ) -> correction_pb2.ListSessionDocumentsResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=20, maximum=100)
        checks.raise_if_any()
        view = await _session(request)
        rows = await correction_documents.page(
            view.row.id, view.row.dataset_id, page.after(), page.fetch
        )
        rows, token = page.finish(rows, lambda r: r.position)
        answer = correction_pb2.ListSessionDocumentsResponse()
        size = 0
        for i, row in enumerate(rows):
            document = document_proto(row)
            size += document.ByteSize()
            if i and size > _DOCUMENT_PAGE_BYTES:
                # Big comments: end the page early, so a message stays far below 4 MiB.
                token = pagination.issue(page.query, [rows[i - 1].position])
                break
            answer.documents.append(document)
        answer.next_page_token = token
        if view.row.model_version_id is not None:
            answer.model_version = (await ml_models.version_number(view.row.model_version_id)) or 0
        return answer

    async def SubmitCorrection(
        self, request: correction_pb2.SubmitCorrectionRequest, context: grpc.aio.ServicerContext
    ) -> correction_pb2.SubmitCorrectionResponse:
        checks = Violations()
        view = await _session(request)
        dataset = await datasets.by_id(view.row.dataset_id)
        await labels.check_labelling(checks, dataset, request.assigned, request.dismissed)
        _check_vocabulary(checks, view, request)
        _, comment_id = await documents.comment_of(
            checks, dataset, request.document_uid, "document_uid"
        )
        await correction_documents.submit(
            view.row.id,
            comment_id,
            labels.label_list(request.assigned),
            labels.label_list(request.dismissed),
        )
        after = await correction.get(view.row.project_id, view.row.id)
        document = await correction_documents.document(view.row.id, dataset.id, comment_id)
        if after is None or document is None:
            raise NotFound(f"correction session {view.row.id} not found")
        return correction_pb2.SubmitCorrectionResponse(
            session=session_proto(after), document=document_proto(document)
        )

    async def WatchCorrectionSession(
        self,
        request: correction_pb2.WatchCorrectionSessionRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[CorrectionSessionChange]:
        view = await _session(request)
        last = _after_version(request.after_version, view)
        session_id, project_id = view.row.id, view.row.project_id
        while True:
            changes = await correction.changes(session_id, last, _WATCH_BATCH)
            if changes:
                current = await correction.get(project_id, session_id)
                if current is None:
                    return
                for change in changes:
                    yield change_proto(current, change)
                    last = change.version
                    if change.status in _ENDS:
                        return
                continue
            state = await correction.version_of(session_id)
            if state is None:
                return
            version, status = state
            if version > last:
                continue
            if status in _ENDS:
                return
            # Nothing new: wait (no connection is held between reads).
            await asyncio.sleep(WATCH_POLL_SECONDS)

    async def ListCorrectionSessionChanges(
        self,
        request: correction_pb2.ListCorrectionSessionChangesRequest,
        context: grpc.aio.ServicerContext,
    ) -> correction_pb2.ListCorrectionSessionChangesResponse:
        checks = Violations()
        page = pagination.page(request, checks, default=100, maximum=1000)
        checks.raise_if_any()
        view = await _session(request)
        start = page.after() or _after_version(request.after_version, view)
        rows = await correction.changes(view.row.id, start, page.fetch)
        rows, token = page.finish(rows, lambda c: c.version)
        return correction_pb2.ListCorrectionSessionChangesResponse(
            changes=[change_proto(view, c) for c in rows], next_page_token=token
        )


def _after_version(after: int, view: SessionView) -> int:
    if not 0 <= after <= view.row.version:
        raise InvalidArgument.field(
            "after_version",
            f"must be 0..{view.row.version} (the session's last change), got {after}",
        )
    return after
