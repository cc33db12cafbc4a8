"""Correction sessions and document groups: every error the document lists, permissions,
and bad input on every RPC, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from corrigo.client import AsyncClient, CorrigoError
from corrigo.server.api.permissions import RULES
from corrigo.v1 import admin_pb2
from corrigo.v1 import correction_pb2 as pb
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.comments_pb2 import Label
from tests import correction_helpers as c
from tests import dataset_helpers as h
from tests.conftest import Org

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def failure(call: Awaitable[Any]) -> CorrigoError:
    """The error a unary call or a whole stream fails with."""
    try:
        result = await call
    except grpc.RpcError as error:
        return CorrigoError.from_rpc_error(error)
    raise AssertionError(f"expected an error, got {result!r}")


async def drain(call: Any) -> list[Any]:
    return [message async for message in call]


def invalid(error: CorrigoError, *fields: str) -> None:
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.reason == (
        "PAGE_TOKEN_INVALID" if fields == ("page_token",) else "INVALID_REQUEST"
    )
    assert error.fields == list(fields)


async def test_every_rpc_has_a_permission_rule() -> None:
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            assert f"/{service.full_name}/{method.name}" in RULES


async def test_create_rejects_bad_input_naming_each_field(org: Org) -> None:
    corpus = await c.corpus(org, 3)
    other_source = await h.source(org.admin, corpus.owner, "elsewhere")
    await h.sync(org.admin, corpus.owner, "elsewhere", [h.comment("x")])
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"sample_size": 0}, ["sample_size"]),
        ({"sample_size": -1}, ["sample_size"]),
        ({"sample_size": 1001}, ["sample_size"]),
        ({"name": "n" * 257}, ["name"]),
        ({"description": "d" * 4097}, ["description"]),
        ({"strategy": 7}, ["strategy"]),
        ({"model_id": 0}, ["model_id"]),
        ({"model_id": -5}, ["model_id"]),
        ({"document_group_id": -1}, ["document_group_id"]),
        ({"document_uids": [corpus.uids[0]], "document_group_id": 1}, ["document_group_id"]),
        ({"document_uids": ["not-a-uid"]}, ["document_uids[0]"]),
        ({"document_uids": [corpus.uids[0], corpus.uids[0]]}, ["document_uids[1]"]),
        ({"document_uids": [corpus.uids[1], f"{other_source.id}.x"]}, ["document_uids[1]"]),
        ({"document_uids": [f"{corpus.source_id}.missing"]}, ["document_uids[0]"]),
        ({"document_uids": ["u"] * 4097}, ["document_uids"]),
        ({"sample_size": 0, "name": "n" * 300, "strategy": 3}, ["sample_size", "name", "strategy"]),
    ]
    for fields, expected in cases:
        invalid(await failure(corpus.create(**fields)), *expected)
    # The limits themselves are fine.
    made = await corpus.create(sample_size=1000, name="n" * 256, description="d" * 4096)
    assert made.document_count == 3 and len(made.name) == 256


async def test_create_answers_not_found_for_project_model_and_group(
    org: Org, other_org: Org
) -> None:
    corpus = await c.corpus(org, 2)
    elsewhere = await c.corpus(org, 2)
    sessions = org.admin.corrections
    cases = [
        pb.CreateCorrectionSessionRequest(project_id=999_999, model_id=corpus.model_id),
        pb.CreateCorrectionSessionRequest(project_id=corpus.project_id, model_id=999_999),
        # A model of another project of the organization.
        pb.CreateCorrectionSessionRequest(
            project_id=corpus.project_id, model_id=elsewhere.model_id
        ),
        pb.CreateCorrectionSessionRequest(
            project_id=corpus.project_id, model_id=corpus.model_id, document_group_id=999_999
        ),
    ]
    for request in cases:
        error = await failure(sessions.CreateCorrectionSession(request))
        assert error.code == grpc.StatusCode.NOT_FOUND, request
        assert error.reason == "RESOURCE_NOT_FOUND"
    # Another organization's project does not exist for its admin.
    error = await failure(
        other_org.admin.corrections.CreateCorrectionSession(corpus.create_request())
    )
    assert error.code == grpc.StatusCode.NOT_FOUND
    # A group of another project of the organization.
    group = await org.admin.document_groups.CreateDocumentGroup(
        pb.CreateDocumentGroupRequest(project_id=elsewhere.project_id, document_uids=elsewhere.uids)
    )
    error = await failure(corpus.create(document_group_id=group.id))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_every_document_annotated_is_a_conflict_with_a_reason(org: Org) -> None:
    corpus = await c.corpus(org, 3)
    await corpus.annotate(range(3))
    error = await failure(corpus.create())
    assert error.code == grpc.StatusCode.ABORTED  # HTTP 409 through the gateway
    assert error.reason == "ALL_DOCUMENTS_ANNOTATED"
    assert error.message == "all documents are annotated"
    # Also when only the given documents (or a group's) are all annotated.
    open_corpus = await c.corpus(org, 3)
    await open_corpus.annotate([0, 1])
    error = await failure(open_corpus.create(document_uids=open_corpus.uids[:2]))
    assert error.reason == "ALL_DOCUMENTS_ANNOTATED"
    group = await org.admin.document_groups.CreateDocumentGroup(
        pb.CreateDocumentGroupRequest(
            project_id=open_corpus.project_id, document_uids=open_corpus.uids[:2]
        )
    )
    error = await failure(open_corpus.create(document_group_id=group.id))
    assert error.reason == "ALL_DOCUMENTS_ANNOTATED"


async def test_no_candidates_and_documents_held_by_open_sessions(org: Org) -> None:
    empty = await c.corpus(org, 0)
    error = await failure(empty.create())
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "NO_CANDIDATE_DOCUMENTS"
    # A group of documents outside the model's dataset.
    corpus = await c.corpus(org, 2)
    outside = await h.source(org.admin, corpus.owner, "outside")
    await h.sync(org.admin, corpus.owner, "outside", [h.comment("o")])
    group = await org.admin.document_groups.CreateDocumentGroup(
        pb.CreateDocumentGroupRequest(
            project_id=corpus.project_id, document_uids=[f"{outside.id}.o"]
        )
    )
    error = await failure(corpus.create(document_group_id=group.id))
    assert error.reason == "NO_CANDIDATE_DOCUMENTS"
    # Every unannotated document in another open session: ABORTED with its own reason.
    await c.prepared(corpus, await corpus.create())
    error = await failure(corpus.create())
    assert error.code == grpc.StatusCode.ABORTED
    assert error.reason == "DOCUMENTS_IN_OPEN_SESSIONS"


async def test_without_a_valid_token_every_call_is_unauthenticated(org: Org) -> None:
    corpus = await c.corpus(org, 1)
    for token, reason in ((None, "TOKEN_MISSING"), ("crg_1_wrong", "TOKEN_INVALID")):
        client = org.running.client(token)
        org.clients.append(client)
        error = await failure(client.corrections.CreateCorrectionSession(corpus.create_request()))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == reason
        error = await failure(
            drain(
                client.corrections.WatchCorrectionSession(
                    pb.WatchCorrectionSessionRequest(project_id=corpus.project_id, session_id=1)
                )
            )
        )
        assert error.code == grpc.StatusCode.UNAUTHENTICATED


def every_call(
    client: AsyncClient, project_id: int, session_id: int, group_id: int, model_id: int
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call of every RPC of both services."""
    sessions, groups = client.corrections, client.document_groups
    session = {"project_id": project_id, "session_id": session_id}
    group = {"project_id": project_id, "group_id": group_id}
    return {
        "CreateCorrectionSession": lambda: sessions.CreateCorrectionSession(
            pb.CreateCorrectionSessionRequest(project_id=project_id, model_id=model_id)
        ),
        "GetCorrectionSession": lambda: sessions.GetCorrectionSession(
            pb.GetCorrectionSessionRequest(**session)
        ),
        "ListCorrectionSessions": lambda: sessions.ListCorrectionSessions(
            pb.ListCorrectionSessionsRequest(project_id=project_id)
        ),
        "ListSessionDocuments": lambda: sessions.ListSessionDocuments(
            pb.ListSessionDocumentsRequest(**session)
        ),
        "SubmitCorrection": lambda: sessions.SubmitCorrection(
            pb.SubmitCorrectionRequest(**session, document_uid="0123456789abcdef.x")
        ),
        "WatchCorrectionSession": lambda: drain(
            sessions.WatchCorrectionSession(pb.WatchCorrectionSessionRequest(**session))
        ),
        "ListCorrectionSessionChanges": lambda: sessions.ListCorrectionSessionChanges(
            pb.ListCorrectionSessionChangesRequest(**session)
        ),
        "DeleteCorrectionSession": lambda: sessions.DeleteCorrectionSession(
            pb.DeleteCorrectionSessionRequest(**session)
        ),
        "CreateDocumentGroup": lambda: groups.CreateDocumentGroup(
            pb.CreateDocumentGroupRequest(project_id=project_id, document_uids=["x"])
        ),
        "GetDocumentGroup": lambda: groups.GetDocumentGroup(pb.GetDocumentGroupRequest(**group)),
        "ListDocumentGroups": lambda: groups.ListDocumentGroups(
            pb.ListDocumentGroupsRequest(project_id=project_id)
        ),
        "DeleteDocumentGroup": lambda: groups.DeleteDocumentGroup(
            pb.DeleteDocumentGroupRequest(**group)
        ),
    }


async def test_below_annotator_every_rpc_is_permission_denied(org: Org) -> None:
    corpus = await c.corpus(org, 2)
    session = await corpus.create()
    await c.prepared(corpus, session)
    group = await corpus.annotator.document_groups.CreateDocumentGroup(
        pb.CreateDocumentGroupRequest(project_id=corpus.project_id, document_uids=corpus.uids)
    )
    _, viewer = await org.member(corpus.project_id, Member.VIEWER)
    _, outsider = await org.user()
    for client in (viewer, outsider):
        calls = every_call(client, corpus.project_id, session.id, group.id, corpus.model_id)
        assert len(calls) == 12
        for name, call in calls.items():
            error = await failure(call())
            assert error.code == grpc.StatusCode.PERMISSION_DENIED, name
            assert error.reason == "PERMISSION_MISSING"
            assert error.error_metadata == {"permission": "correction_sessions"}
        # Whether or not the project exists.
        error = await failure(
            viewer.corrections.CreateCorrectionSession(
                pb.CreateCorrectionSessionRequest(project_id=999_999, model_id=1)
            )
        )
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
    # ANNOTATOR and above (and organization admins) may; their calls reach the handler.
    for role in (Member.EDITOR, Member.ADMIN):
        _, member = await org.member(corpus.project_id, role)
        got = await member.corrections.GetCorrectionSession(
            pb.GetCorrectionSessionRequest(project_id=corpus.project_id, session_id=session.id)
        )
        assert got.id == session.id
    listed = await org.admin.corrections.ListCorrectionSessions(
        pb.ListCorrectionSessionsRequest(project_id=corpus.project_id)
    )
    assert [s.id for s in listed.sessions] == [session.id]


async def test_sessions_and_groups_of_other_projects_are_not_found(
    org: Org, other_org: Org
) -> None:
    corpus = await c.corpus(org, 2)
    session = await corpus.create()
    await c.prepared(corpus, session)
    group = await corpus.annotator.document_groups.CreateDocumentGroup(
        pb.CreateDocumentGroupRequest(project_id=corpus.project_id, document_uids=corpus.uids)
    )
    # The annotator of the first project also annotates in a second one; naming that
    # project, the first one's session and group do not exist.
    second = await org.project()
    await org.admin.admin.SetMember(
        admin_pb2.SetMemberRequest(
            project_id=second.id, user_id=corpus.annotator_id, role=Member.ANNOTATOR
        )
    )
    calls = every_call(corpus.annotator, second.id, session.id, group.id, corpus.model_id)
    assert list((await calls.pop("ListCorrectionSessions")()).sessions) == []
    assert list((await calls.pop("ListDocumentGroups")()).groups) == []
    invalid(await failure(calls.pop("CreateDocumentGroup")()), "document_uids[0]")
    for name, call in calls.items():
        error = await failure(call())
        assert error.code == grpc.StatusCode.NOT_FOUND, name
    # Another organization's admin sees none of it.
    for name, call in every_call(
        other_org.admin, corpus.project_id, session.id, group.id, corpus.model_id
    ).items():
        error = await failure(call())
        assert error.code == grpc.StatusCode.NOT_FOUND, name


async def test_bad_input_on_every_session_rpc(org: Org) -> None:
    corpus = await c.corpus(org, 3)
    session = await corpus.create()
    await c.prepared(corpus, session)
    sessions = corpus.annotator.corrections
    project_id = corpus.project_id
    for name, call in every_call(corpus.annotator, project_id, 0, 1, 1).items():
        if name in ("CreateCorrectionSession", "ListCorrectionSessions") or "Group" in name:
            continue
        invalid(await failure(call()), "session_id")
    for call in every_call(corpus.annotator, 0, 1, 1, 1).values():
        invalid(await failure(call()), "project_id")
    missing = every_call(corpus.annotator, project_id, 999_999, 1, corpus.model_id)
    for name in (
        "GetCorrectionSession",
        "ListSessionDocuments",
        "SubmitCorrection",
        "WatchCorrectionSession",
        "ListCorrectionSessionChanges",
        "DeleteCorrectionSession",
    ):
        error = await failure(missing[name]())
        assert error.code == grpc.StatusCode.NOT_FOUND, name

    def listing(**fields: Any) -> Awaitable[Any]:
        return sessions.ListCorrectionSessions(
            pb.ListCorrectionSessionsRequest(project_id=project_id, **fields)
        )

    invalid(await failure(listing(status=99)), "status")
    invalid(await failure(listing(page_size=-1)), "page_size")
    invalid(await failure(listing(page_size=501)), "page_size")
    invalid(await failure(listing(page_token="garbage")), "page_token")

    def documents(**fields: Any) -> Awaitable[Any]:
        return sessions.ListSessionDocuments(
            pb.ListSessionDocumentsRequest(project_id=project_id, session_id=session.id, **fields)
        )

    invalid(await failure(documents(page_size=101)), "page_size")
    invalid(await failure(documents(page_token="garbage")), "page_token")
    assert len((await documents(page_size=100)).documents) == 3

    def changes(**fields: Any) -> Awaitable[Any]:
        return sessions.ListCorrectionSessionChanges(
            pb.ListCorrectionSessionChangesRequest(
                project_id=project_id, session_id=session.id, **fields
            )
        )

    for after in (-1, 5):
        watched = sessions.WatchCorrectionSession(
            pb.WatchCorrectionSessionRequest(
                project_id=project_id, session_id=session.id, after_version=after
            )
        )
        invalid(await failure(drain(watched)), "after_version")
        invalid(await failure(changes(after_version=after)), "after_version")
    invalid(await failure(changes(page_size=1001)), "page_size")


async def test_bad_corrections(org: Org) -> None:
    corpus = await c.corpus(org, 3)
    session = await corpus.create(sample_size=2)
    await c.prepared(corpus, session)
    inside = [d.uid for d in await c.documents(corpus, session.id)]
    (outside,) = set(corpus.uids) - set(inside)

    def submit(uid: str, assigned: list[Label], dismissed: list[Label] = []) -> Awaitable[Any]:  # noqa: B006
        return corpus.annotator.corrections.SubmitCorrection(
            pb.SubmitCorrectionRequest(
                project_id=corpus.project_id,
                session_id=session.id,
                document_uid=uid,
                assigned=assigned,
                dismissed=dismissed,
            )
        )

    good = Label(name="Comfort", sentiment="positive")
    invalid(await failure(submit("malformed", [good])), "document_uid")
    invalid(await failure(submit("0123456789abcdef.c0", [good])), "document_uid")
    assert (await failure(submit(f"{corpus.source_id}.nope", [good]))).code == (
        grpc.StatusCode.NOT_FOUND
    )
    assert (await failure(submit(outside, [good]))).code == grpc.StatusCode.NOT_FOUND
    invalid(
        await failure(submit(inside[0], [Label(name="Unknown", sentiment="positive")])),
        "assigned[0].name",
    )
    invalid(await failure(submit(inside[0], [Label(name="Comfort")])), "assigned[0].sentiment")
    invalid(await failure(submit(inside[0], [good, good])), "assigned[1].name")
    invalid(await failure(submit(inside[0], [good], [good])), "dismissed[0].name")
    invalid(
        await failure(submit(inside[0], [Label(name="Price", sentiment="positive")])),
        "assigned[0].name",
    )  # in the taxonomy, not one of the model's
    invalid(
        await failure(submit(inside[0], [Label(name="a >", sentiment="positive")])),
        "assigned[0].name",
    )
    # Nothing was written by the refused corrections.
    documents = await c.documents(corpus, session.id)
    assert not any(d.corrected or d.assigned for d in documents)
    # A session that is not ANNOTATING takes none.
    failed = await c.corpus(org, 2, score=None)
    broken = await failed.create()
    assert (await c.prepared(failed, broken)).status == c.Status.FAILED
    error = await failure(
        failed.annotator.corrections.SubmitCorrection(
            pb.SubmitCorrectionRequest(
                project_id=failed.project_id,
                session_id=broken.id,
                document_uid=failed.uids[0],
                assigned=[good],
            )
        )
    )
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_bad_input_on_every_group_rpc(org: Org) -> None:
    corpus = await c.corpus(org, 2)
    groups = corpus.annotator.document_groups
    other = await c.corpus(org, 1)

    def create(uids: list[str], name: str = "") -> Awaitable[Any]:
        return groups.CreateDocumentGroup(
            pb.CreateDocumentGroupRequest(
                project_id=corpus.project_id, name=name, document_uids=uids
            )
        )

    invalid(await failure(create([])), "document_uids")
    invalid(await failure(create(corpus.uids, name="n" * 257)), "name")
    invalid(await failure(create(["bad"])), "document_uids[0]")
    invalid(await failure(create([corpus.uids[0], corpus.uids[0]])), "document_uids[1]")
    invalid(await failure(create([corpus.uids[0], other.uids[0]])), "document_uids[1]")
    invalid(await failure(create([f"{corpus.source_id}.missing"])), "document_uids[0]")
    invalid(await failure(create(["u"] * 4097)), "document_uids")
    for call in (
        groups.GetDocumentGroup(pb.GetDocumentGroupRequest(project_id=corpus.project_id)),
        groups.DeleteDocumentGroup(pb.DeleteDocumentGroupRequest(project_id=corpus.project_id)),
    ):
        invalid(await failure(call), "group_id")
    for call in (
        groups.GetDocumentGroup(
            pb.GetDocumentGroupRequest(project_id=corpus.project_id, group_id=999_999)
        ),
        groups.DeleteDocumentGroup(
            pb.DeleteDocumentGroupRequest(project_id=corpus.project_id, group_id=999_999)
        ),
    ):
        assert (await failure(call)).code == grpc.StatusCode.NOT_FOUND
    for fields, field in (({"page_size": -1}, "page_size"), ({"page_token": "x"}, "page_token")):
        invalid(
            await failure(
                groups.ListDocumentGroups(
                    pb.ListDocumentGroupsRequest(project_id=corpus.project_id, **fields)  # type: ignore[arg-type]
                )
            ),
            field,
        )
