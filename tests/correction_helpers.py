"""Builders shared by the correction session tests: a project whose dataset holds
comments, labels, a model with versions and predictions; and ways to follow a session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from corrigo.client import AsyncClient, CorrigoError
from corrigo.v1 import admin_pb2, correction_pb2, datasets_pb2, models_pb2
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.comments_pb2 import Label, PredictedLabel
from corrigo.v1.correction_pb2 import CorrectionSession, CorrectionSessionChange
from corrigo.v1.models_pb2 import Model
from tests import dataset_helpers as h
from tests.conftest import Org

Status = CorrectionSession.Status
TAXONOMY = ["Comfort", "POS", "Price", "Price > Too high"]


@dataclass
class Corpus:
    """A project with a dataset `ds` of `uids` (source `mailbox`), a model and an
    annotator of the project."""

    org: Org
    org_id: int
    project_id: int
    owner: str
    source_id: str
    uids: list[str]
    model_id: int
    annotator_id: int
    annotator: AsyncClient
    versions: list[int] = field(default_factory=list)

    def create_request(self, **fields: Any) -> correction_pb2.CreateCorrectionSessionRequest:
        request = correction_pb2.CreateCorrectionSessionRequest(
            project_id=self.project_id, model_id=self.model_id
        )
        sample_size = fields.pop("sample_size", None)
        if sample_size is not None:
            request.sample_size.value = sample_size
        for name, value in fields.items():
            if isinstance(value, list):
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        return request

    async def create(self, **fields: Any) -> CorrectionSession:
        return await self.annotator.corrections.CreateCorrectionSession(
            self.create_request(**fields)
        )

    async def annotate(self, indexes: Sequence[int], label: str = "Comfort") -> None:
        for i in indexes:
            await self.org.admin.datasets.UpdateLabelling(
                datasets_pb2.UpdateLabellingRequest(
                    owner=self.owner,
                    name="ds",
                    comment_uid=self.uids[i],
                    assigned=[Label(name=label, sentiment="positive")],
                )
            )

    async def version(self, score: float, predictions: dict[int, float] | None = None) -> int:
        """A new version of the model with `score` and, for the comments `predictions`
        names, a predicted `Comfort` with that probability."""
        version = await self.org.admin.models.CreateModelVersion(
            models_pb2.CreateModelVersionRequest(
                owner=self.owner, dataset="ds", model_id=self.model_id, validation_score=score
            )
        )
        if predictions:
            await self.org.admin.models.UploadPredictions(
                models_pb2.UploadPredictionsRequest(
                    owner=self.owner,
                    dataset="ds",
                    version=version.version,
                    predictions=[
                        models_pb2.CommentPredictions(
                            uid=self.uids[i],
                            labels=[PredictedLabel(name="Comfort", probability=p, sentiment=0.5)],
                        )
                        for i, p in predictions.items()
                    ],
                )
            )
        self.versions.append(version.version)
        return version.version


async def corpus(
    org: Org,
    n: int = 10,
    *,
    model_type: int = Model.ABSA,
    classes: Sequence[str] = ("Comfort",),
    labels: Sequence[str] = ("POS",),
    display_name: str = "This is my model",
    score: float | None = 0.8,
) -> Corpus:
    """`n` comments `c0`.. in a dataset with sentiment, a model, and (unless `score` is
    None) a first version with that score predicting every comment, comment i with
    probability (i + 1) / (n + 1)."""
    project = await org.project()
    owner = project.name
    source = await h.source(org.admin, owner)
    await h.dataset(org.admin, owner, [source.id])
    await org.admin.datasets.CreateLabelDefs(
        datasets_pb2.CreateLabelDefsRequest(
            owner=owner, name="ds", label_defs=[datasets_pb2.LabelDef(name=t) for t in TAXONOMY]
        )
    )
    if n:
        await h.sync(org.admin, owner, "mailbox", [h.comment(f"c{i}", i) for i in range(n)])
    model = await org.admin.models.CreateModel(
        models_pb2.CreateModelRequest(
            owner=owner,
            dataset="ds",
            model=Model(
                display_name=display_name,
                type=model_type,  # type: ignore[arg-type]
                classes=classes,
                labels=labels,
            ),
        )
    )
    annotator_id, annotator = await org.member(project.id, Member.ANNOTATOR)
    me = await org.admin.admin.WhoAmI(admin_pb2.WhoAmIRequest())
    made = Corpus(
        org,
        me.organization.id,
        project.id,
        owner,
        source.id,
        [f"{source.id}.c{i}" for i in range(n)],
        model.id,
        annotator_id,
        annotator,
    )
    if score is not None:
        await made.version(score, {i: (i + 1) / (n + 1) for i in range(n)})
    return made


PREPARED = (Status.ANNOTATING, Status.FAILED, Status.FINISHED)


async def watch(
    client: AsyncClient,
    project_id: int,
    session_id: int,
    *,
    after_version: int = 0,
    until: Sequence[int] = PREPARED,
) -> list[CorrectionSessionChange]:
    """The session's changes from `after_version` until one with a status in `until`
    (or the end of the stream)."""
    call = client.corrections.WatchCorrectionSession(
        correction_pb2.WatchCorrectionSessionRequest(
            project_id=project_id, session_id=session_id, after_version=after_version
        )
    )
    seen: list[CorrectionSessionChange] = []
    try:
        async for change in call:
            seen.append(change)
            if change.session.status in until:
                break
    finally:
        call.cancel()
    return seen


async def gone(corpus: Corpus, session_id: int) -> None:
    """Wait until a session being deleted is gone: its watch ends (or it is gone already)."""
    try:
        await watch(corpus.annotator, corpus.project_id, session_id, until=())
    except CorrigoError as error:
        assert error.code == grpc.StatusCode.NOT_FOUND, error


async def prepared(corpus: Corpus, session: CorrectionSession) -> CorrectionSession:
    """The session once the server has prepared it (ANNOTATING) or failed to."""
    changes = await watch(corpus.annotator, corpus.project_id, session.id)
    return changes[-1].session


async def documents(
    corpus: Corpus, session_id: int, page_size: int = 0
) -> list[correction_pb2.SessionDocument]:
    """Every document of the session, page by page."""
    request = correction_pb2.ListSessionDocumentsRequest(
        project_id=corpus.project_id, session_id=session_id, page_size=page_size
    )
    found = []
    while True:
        page = await corpus.annotator.corrections.ListSessionDocuments(request)
        found.extend(page.documents)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


async def correct(
    corpus: Corpus, session_id: int, uid: str, *labels: str
) -> correction_pb2.SubmitCorrectionResponse:
    return await corpus.annotator.corrections.SubmitCorrection(
        correction_pb2.SubmitCorrectionRequest(
            project_id=corpus.project_id,
            session_id=session_id,
            document_uid=uid,
            assigned=[Label(name=name, sentiment="negative") for name in labels],
        )
    )
