"""Correction sessions through the real server on SQLite and PostgreSQL: the document's
example, sampling, document groups, the lifecycle and its watch, corrections becoming the
dataset's labels, deletion, listing."""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format

from corrigo.client import CorrigoError
from corrigo.v1 import correction_pb2, datasets_pb2
from corrigo.v1.comments_pb2 import Label
from corrigo.v1.correction_pb2 import CreateCorrectionSessionRequest
from corrigo.v1.models_pb2 import Model
from tests import correction_helpers as c
from tests import dataset_helpers as h
from tests.conftest import Org
from tests.correction_helpers import Status
from tests.shapes import assert_same_shape

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The document's example request body and answer (000_d10114c9e9509130.txt).
DOCUMENT_REQUEST = {
    "model_id": 1,
    "sample_size": 100,
    "name": "This is my first correction session",
}
DOCUMENT_ANSWER = json.loads("""
{
  "created": "2023-11-02", "finished": "2023-11-02", "document_count": 100,
  "document_group_id": 87, "organization_id": 1, "user_id": 1, "project_id": 1,
  "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "id": 1,
  "name": "This is my first correction session", "progress": 87.7,
  "model": {"id": 1, "display_name": "This is my model"},
  "status": "CREATED", "mode": "CORRECTION", "type": "ABSA", "description": "string",
  "classes": ["Comfort"], "labels": ["POS"], "predicted_score": 0
}
""")
LIFECYCLE = [Status.CREATED, Status.SAMPLING, Status.PREDICTING, Status.ANNOTATING]


def as_json(message: Any) -> dict[str, Any]:
    """The answer as a gateway printing unpopulated fields writes it."""
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def statuses(changes: list[correction_pb2.CorrectionSessionChange]) -> list[int]:
    return [change.session.status for change in changes]


async def test_document_example_request_and_answer(org: Org) -> None:
    corpus = await c.corpus(org, 120)
    body = {**DOCUMENT_REQUEST, "model_id": corpus.model_id}
    request = json_format.Parse(json.dumps(body), CreateCorrectionSessionRequest())
    request.project_id = corpus.project_id
    session = await corpus.annotator.corrections.CreateCorrectionSession(request)

    answer = as_json(session)
    expected = {k: v for k, v in DOCUMENT_ANSWER.items() if k != "finished"}
    assert_same_shape(expected, answer)
    assert "finished" not in answer  # not finished yet
    assert (answer["status"], answer["mode"], answer["type"]) == ("CREATED", "CORRECTION", "ABSA")
    assert answer["name"] == DOCUMENT_ANSWER["name"] and answer["document_count"] == 100
    assert answer["model"] == {"id": corpus.model_id, "display_name": "This is my model"}
    assert (answer["classes"], answer["labels"]) == (["Comfort"], ["POS"])
    assert answer["project_id"] == corpus.project_id and answer["user_id"] == corpus.annotator_id
    assert answer["progress"] == 0 and answer["predicted_score"] == 0
    assert len(answer["uuid"]) == 36 and answer["id"] == session.id >= 1
    assert session.HasField("created")

    ready = await c.prepared(corpus, session)
    assert ready.status == Status.ANNOTATING and ready.document_count == 100
    assert ready.predicted_score == 80  # one version, scored 0.8: nothing to extrapolate
    got = await corpus.annotator.corrections.GetCorrectionSession(
        correction_pb2.GetCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=session.id
        )
    )
    assert got.status == Status.ANNOTATING and got.uuid == session.uuid
    assert got.created == session.created and got.organization_id == session.organization_id


async def test_full_flow_until_finished_and_the_labels_in_the_export(org: Org) -> None:
    corpus = await c.corpus(org, 8)
    await corpus.annotate([0, 1])
    session = await corpus.create(sample_size=3, name="flow", description="three documents")
    assert session.document_count == 3
    ready = await c.prepared(corpus, session)
    assert ready.status == Status.ANNOTATING and ready.progress == 0

    documents = await c.documents(corpus, session.id, page_size=2)
    assert len(documents) == 3 and len({d.uid for d in documents}) == 3
    annotated = set(corpus.uids[:2])
    for document in documents:
        assert document.uid not in annotated and document.comment.uid == document.uid
        index = corpus.uids.index(document.uid)
        (predicted,) = document.predictions.labels
        assert predicted.name == "Comfort"
        assert predicted.probability == pytest.approx((index + 1) / 9)
        assert not document.corrected and not document.HasField("corrected_at")
        assert list(document.assigned) == []
    page = await corpus.annotator.corrections.ListSessionDocuments(
        correction_pb2.ListSessionDocumentsRequest(
            project_id=corpus.project_id, session_id=session.id
        )
    )
    assert page.model_version == corpus.versions[-1] and page.next_page_token == ""

    first = await c.correct(corpus, session.id, documents[0].uid, "POS")
    assert first.session.status == Status.ANNOTATING
    assert first.session.progress == pytest.approx(33.3)
    assert first.document.corrected and first.document.HasField("corrected_at")
    assert [label.name for label in first.document.assigned] == ["POS"]
    # Correcting a document again replaces its labels; progress stays.
    again = await c.correct(corpus, session.id, documents[0].uid, "Comfort")
    assert again.session.progress == pytest.approx(33.3)
    assert [label.name for label in again.document.assigned] == ["Comfort"]
    second = await c.correct(corpus, session.id, documents[1].uid)  # none of the labels applies
    assert second.session.progress == pytest.approx(66.6)
    last = await c.correct(corpus, session.id, documents[2].uid, "Comfort", "POS")
    assert last.session.status == Status.FINISHED and last.session.progress == 100
    assert last.session.HasField("finished")
    assert last.session.finished.ToDatetime() >= last.session.created.ToDatetime()
    finished = as_json(last.session)
    assert_same_shape(DOCUMENT_ANSWER, finished)
    assert finished["status"] == "FINISHED" and finished["description"] == "three documents"

    # The corrections are the documents' labels: the export carries them.
    pages = await h.export_all(
        org.admin, datasets_pb2.ExportDatasetRequest(owner=corpus.owner, name="ds")
    )
    exported = {
        result.comment.uid: [
            (label.name, label.sentiment) for label in result.annotations.labels.assigned
        ]
        for page in pages
        for result in page.comments
    }
    assert exported[documents[0].uid] == [("Comfort", "negative")]
    assert exported[documents[1].uid] == []
    assert exported[documents[2].uid] == [("Comfort", "negative"), ("POS", "negative")]
    listed = await c.documents(corpus, session.id)
    assert all(d.corrected for d in listed)

    with pytest.raises(CorrigoError) as err:
        await c.correct(corpus, session.id, documents[0].uid, "Comfort")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "FAILED_PRECONDITION"


async def test_sampling_never_returns_an_annotated_document(org: Org) -> None:
    corpus = await c.corpus(org, 30)
    await corpus.annotate(range(0, 30, 3))  # 10 annotated
    await corpus.annotate(range(1, 30, 3), label="Price")  # 10 more
    # A labelling with only dismissed labels is not an annotation.
    await org.admin.datasets.UpdateLabelling(
        datasets_pb2.UpdateLabellingRequest(
            owner=corpus.owner,
            name="ds",
            comment_uid=corpus.uids[2],
            dismissed=[Label(name="Comfort", sentiment="positive")],
        )
    )
    session = await corpus.create()  # sample size 100 by default
    assert session.document_count == 10
    await c.prepared(corpus, session)
    sampled = {d.uid for d in await c.documents(corpus, session.id, page_size=100)}
    assert sampled == set(corpus.uids[2::3])


async def test_explicit_documents(org: Org) -> None:
    corpus = await c.corpus(org, 10)
    await corpus.annotate([1])
    given = [corpus.uids[i] for i in (7, 1, 3, 5)]
    session = await corpus.create(document_uids=given)
    assert session.document_count == 3 and session.document_group_id == 0
    await c.prepared(corpus, session)
    assert {d.uid for d in await c.documents(corpus, session.id)} == {
        corpus.uids[i] for i in (3, 5, 7)
    }
    # Fewer than given when the sample size says so; from the free ones only.
    other = await corpus.create(document_uids=corpus.uids[:6], sample_size=2)
    ready = await c.prepared(corpus, other)
    chosen = {d.uid for d in await c.documents(corpus, other.id)}
    assert ready.document_count == 2 and chosen <= {corpus.uids[i] for i in (0, 2, 4)}


async def test_document_groups_and_sessions_sampled_from_them(org: Org) -> None:
    corpus = await c.corpus(org, 10)
    groups = org.admin.document_groups
    members = [corpus.uids[i] for i in (4, 0, 8, 2)]
    group = await groups.CreateDocumentGroup(
        correction_pb2.CreateDocumentGroupRequest(
            project_id=corpus.project_id, name="evens", document_uids=members
        )
    )
    assert (group.name, group.document_count, list(group.document_uids)) == ("evens", 4, members)
    assert group.project_id == corpus.project_id and group.HasField("created")
    got = await groups.GetDocumentGroup(
        correction_pb2.GetDocumentGroupRequest(project_id=corpus.project_id, group_id=group.id)
    )
    assert got == group
    second = await groups.CreateDocumentGroup(
        correction_pb2.CreateDocumentGroupRequest(
            project_id=corpus.project_id, name="one", document_uids=[corpus.uids[9]]
        )
    )
    listed = await groups.ListDocumentGroups(
        correction_pb2.ListDocumentGroupsRequest(project_id=corpus.project_id, page_size=1)
    )
    assert [g.id for g in listed.groups] == [group.id] and listed.next_page_token
    assert list(listed.groups[0].document_uids) == [] and listed.groups[0].document_count == 4
    rest = await groups.ListDocumentGroups(
        correction_pb2.ListDocumentGroupsRequest(
            project_id=corpus.project_id, page_size=1, page_token=listed.next_page_token
        )
    )
    assert [g.id for g in rest.groups] == [second.id] and rest.next_page_token == ""

    await corpus.annotate([0])
    session = await corpus.create(document_group_id=group.id)
    assert session.document_group_id == group.id and session.document_count == 3
    await c.prepared(corpus, session)
    assert {d.uid for d in await c.documents(corpus, session.id)} == {
        corpus.uids[i] for i in (2, 4, 8)
    }
    # Deleting the group leaves the session as it is.
    assert (
        await groups.DeleteDocumentGroup(
            correction_pb2.DeleteDocumentGroupRequest(
                project_id=corpus.project_id, group_id=group.id
            )
        )
        == empty_pb2.Empty()
    )
    with pytest.raises(CorrigoError) as err:
        await groups.GetDocumentGroup(
            correction_pb2.GetDocumentGroupRequest(project_id=corpus.project_id, group_id=group.id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    kept = await corpus.annotator.corrections.GetCorrectionSession(
        correction_pb2.GetCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=session.id
        )
    )
    assert kept.document_group_id == group.id and kept.document_count == 3
    # A group whose unannotated documents are all in an open session.
    taken = await groups.CreateDocumentGroup(
        correction_pb2.CreateDocumentGroupRequest(
            project_id=corpus.project_id, name="taken", document_uids=members
        )
    )
    with pytest.raises(CorrigoError) as err:
        await corpus.create(document_group_id=taken.id)
    assert err.value.code == grpc.StatusCode.ABORTED
    assert err.value.reason == "DOCUMENTS_IN_OPEN_SESSIONS"
    single = await corpus.create(document_group_id=second.id)
    assert single.document_count == 1


async def test_uncertainty_takes_the_least_confident_documents_first(org: Org) -> None:
    corpus = await c.corpus(org, 8, score=None)
    # Comment i's top prediction: these probabilities; 6 and 7 have no predicted label.
    tops = {0: 0.9, 1: 0.2, 2: 0.55, 3: 0.1, 4: 0.7, 5: 0.3}
    await corpus.version(0.7, tops)
    session = await corpus.create(strategy=CreateCorrectionSessionRequest.UNCERTAINTY)
    await c.prepared(corpus, session)
    order = [corpus.uids.index(d.uid) for d in await c.documents(corpus, session.id, page_size=3)]
    assert order[:6] == [3, 1, 5, 2, 4, 0] and set(order[6:]) == {6, 7}
    # With a sample size, only the least confident.
    await corpus.org.admin.corrections.DeleteCorrectionSession(
        correction_pb2.DeleteCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=session.id
        )
    )
    await c.gone(corpus, session.id)
    small = await corpus.create(strategy=CreateCorrectionSessionRequest.UNCERTAINTY, sample_size=2)
    await c.prepared(corpus, small)
    assert [d.uid for d in await c.documents(corpus, small.id)] == [corpus.uids[3], corpus.uids[1]]


async def test_predicted_score_follows_the_learning_curve_of_the_versions(org: Org) -> None:
    corpus = await c.corpus(org, 10, score=None)
    await corpus.version(0.5)  # trained on 0 labelled documents
    await corpus.annotate(range(4))
    await corpus.version(0.7, {i: 0.5 for i in range(10)})  # trained on 4
    session = await corpus.create()
    ready = await c.prepared(corpus, session)
    assert ready.document_count == 6
    slope = (0.7 - 0.5) / (math.log(5) - math.log(1))
    expected = 0.7 + slope * (math.log(4 + 6 + 1) - math.log(4 + 1))
    assert ready.predicted_score == round(100 * expected) == 80


async def test_watch_sees_every_transition_and_ends_when_finished(org: Org) -> None:
    corpus = await c.corpus(org, 3)
    session = await corpus.create()
    changes = await c.watch(corpus.annotator, corpus.project_id, session.id)
    assert statuses(changes) == LIFECYCLE
    assert [change.version for change in changes] == [1, 2, 3, 4]
    assert [change.session.document_count for change in changes] == [3, 3, 3, 3]
    assert all(change.session.id == session.id for change in changes)
    assert all(not change.session.HasField("finished") for change in changes)

    # A watch open while annotators work sees each progress change, then FINISHED.
    call = corpus.annotator.corrections.WatchCorrectionSession(
        correction_pb2.WatchCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=session.id, after_version=4
        )
    )
    for document in await c.documents(corpus, session.id):
        await c.correct(corpus, session.id, document.uid, "Comfort")
    live = [change async for change in call]  # ends by itself after FINISHED
    assert [(ch.version, ch.session.status, ch.session.progress) for ch in live] == [
        (5, Status.ANNOTATING, pytest.approx(33.3)),
        (6, Status.ANNOTATING, pytest.approx(66.6)),
        (7, Status.FINISHED, 100),
    ]
    assert live[-1].session.HasField("finished")

    # Watching a finished session replays its history and ends; resuming sends the rest.
    replay = await c.watch(corpus.annotator, corpus.project_id, session.id, until=())
    assert statuses(replay) == [*LIFECYCLE, Status.ANNOTATING, Status.ANNOTATING, Status.FINISHED]
    resumed = await c.watch(corpus.annotator, corpus.project_id, session.id, after_version=6)
    assert [change.version for change in resumed] == [7]
    assert await c.watch(corpus.annotator, corpus.project_id, session.id, after_version=7) == []

    # The unary twin pages the same changes.
    request = correction_pb2.ListCorrectionSessionChangesRequest(
        project_id=corpus.project_id, session_id=session.id, page_size=4
    )
    first = await corpus.annotator.corrections.ListCorrectionSessionChanges(request)
    assert [ch.version for ch in first.changes] == [1, 2, 3, 4] and first.next_page_token
    request.page_token = first.next_page_token
    second = await corpus.annotator.corrections.ListCorrectionSessionChanges(request)
    assert [ch.version for ch in second.changes] == [5, 6, 7] and second.next_page_token == ""
    assert second.changes[-1] == replay[-1]
    after = await corpus.annotator.corrections.ListCorrectionSessionChanges(
        correction_pb2.ListCorrectionSessionChangesRequest(
            project_id=corpus.project_id, session_id=session.id, after_version=5
        )
    )
    assert [ch.version for ch in after.changes] == [6, 7]


async def test_a_model_without_version_fails_with_the_reason_and_releases_its_documents(
    org: Org,
) -> None:
    corpus = await c.corpus(org, 4, score=None)
    session = await corpus.create(sample_size=2)
    changes = await c.watch(corpus.annotator, corpus.project_id, session.id, until=())
    assert statuses(changes) == [Status.CREATED, Status.SAMPLING, Status.PREDICTING, Status.FAILED]
    failed = changes[-1].session
    assert failed.failure_reason == (
        f"model {corpus.model_id} has no version: there are no predictions to correct"
    )
    assert as_json(failed)["status"] == "FAILED"
    assert all(not change.session.failure_reason for change in changes[:-1])
    # Its documents are free again: a session after the first version takes all four.
    await corpus.version(0.6, {0: 0.4})
    again = await corpus.create()
    assert again.document_count == 4
    assert (await c.prepared(corpus, again)).status == Status.ANNOTATING


async def test_delete_shows_deleting_until_gone_and_frees_the_documents(org: Org) -> None:
    corpus = await c.corpus(org, 4)
    session = await corpus.create()
    await c.prepared(corpus, session)
    request = correction_pb2.DeleteCorrectionSessionRequest(
        project_id=corpus.project_id, session_id=session.id
    )
    watching = corpus.annotator.corrections.WatchCorrectionSession(
        correction_pb2.WatchCorrectionSessionRequest(
            project_id=corpus.project_id, session_id=session.id, after_version=4
        )
    )
    deleting = await corpus.annotator.corrections.DeleteCorrectionSession(request)
    assert deleting.status == Status.DELETING and deleting.id == session.id
    # The stream ends once the session is gone, having shown DELETING, unless the session
    # went before the watch read that change (nothing) or before the watch began (it
    # answers NOT_FOUND, as for any session that does not exist).
    try:
        assert statuses([change async for change in watching]) in ([Status.DELETING], [])
    except CorrigoError as gone:
        assert gone.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(CorrigoError) as err:
        await corpus.annotator.corrections.GetCorrectionSession(
            correction_pb2.GetCorrectionSessionRequest(
                project_id=corpus.project_id, session_id=session.id
            )
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(CorrigoError) as err:
        await corpus.annotator.corrections.DeleteCorrectionSession(request)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert (await corpus.create()).document_count == 4


async def test_list_sessions_pages_and_filters_by_status(org: Org) -> None:
    corpus = await c.corpus(org, 6)
    first = await corpus.create(sample_size=2, name="a")
    await c.prepared(corpus, first)
    second = await corpus.create(sample_size=2, name="b")
    await c.prepared(corpus, second)
    for document in await c.documents(corpus, second.id):
        await c.correct(corpus, second.id, document.uid, "Comfort")
    third = await corpus.create(sample_size=2, name="c")
    await c.prepared(corpus, third)
    other = await c.corpus(org, 1)
    await other.create()

    def request(**fields: Any) -> correction_pb2.ListCorrectionSessionsRequest:
        return correction_pb2.ListCorrectionSessionsRequest(
            project_id=corpus.project_id,
            **fields,  # type: ignore[arg-type]
        )

    sessions = corpus.annotator.corrections
    everything = await sessions.ListCorrectionSessions(request())
    assert [s.name for s in everything.sessions] == ["a", "b", "c"]
    assert [s.status for s in everything.sessions] == [
        Status.ANNOTATING,
        Status.FINISHED,
        Status.ANNOTATING,
    ]
    assert everything.sessions[0].model.display_name == "This is my model"
    page = await sessions.ListCorrectionSessions(request(page_size=2))
    assert [s.id for s in page.sessions] == [first.id, second.id] and page.next_page_token
    rest = await sessions.ListCorrectionSessions(
        request(page_size=2, page_token=page.next_page_token)
    )
    assert [s.id for s in rest.sessions] == [third.id] and rest.next_page_token == ""
    annotating = await sessions.ListCorrectionSessions(request(status=Status.ANNOTATING))
    assert [s.id for s in annotating.sessions] == [first.id, third.id]
    finished = await sessions.ListCorrectionSessions(request(status=Status.FINISHED))
    assert [s.id for s in finished.sessions] == [second.id]
    assert (
        list((await sessions.ListCorrectionSessions(request(status=Status.STARTED))).sessions) == []
    )
    # A token is bound to its query.
    with pytest.raises(CorrigoError) as err:
        await sessions.ListCorrectionSessions(
            request(page_size=2, page_token=page.next_page_token, status=Status.FINISHED)
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["page_token"]


async def test_class_models_take_at_most_one_class(org: Org) -> None:
    corpus = await c.corpus(
        org, 2, model_type=Model.CLASSLABEL, classes=("Comfort", "Price"), labels=("POS",)
    )
    session = await corpus.create()
    ready = await c.prepared(corpus, session)
    assert ready.type == Model.CLASSLABEL and list(ready.classes) == ["Comfort", "Price"]
    uid = corpus.uids[0]
    with pytest.raises(CorrigoError) as err:
        await c.correct(corpus, session.id, uid, "Comfort", "Price")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["assigned"]
    with pytest.raises(CorrigoError) as err:
        await c.correct(corpus, session.id, uid, "Price > Too high")  # not the model's
    assert err.value.fields == ["assigned[0].name"]
    answer = await c.correct(corpus, session.id, uid, "Price", "POS")
    assert [label.name for label in answer.document.assigned] == ["Price", "POS"]
    assert answer.session.progress == 50
