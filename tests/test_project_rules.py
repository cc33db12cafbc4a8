"""PROJECT rules are checked before the handler runs: each names how its project is found
(a request field, or a lookup by what the request holds); a lookup that finds nothing the
caller may see answers NOT_FOUND, a caller without the permission PERMISSION_DENIED, and a
lookup that checks nothing INTERNAL (a logged bug); in each case nothing was written."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pool

from corrigo.client.errors import CorrigoError
from corrigo.server import app
from corrigo.server.api import auth
from corrigo.server.api.permissions import RULES, Scope
from corrigo.server.services import practice_catalog
from corrigo.v1 import practice_pb2, sources_pb2
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.practice_pb2 import PracticeClass
from tests.conftest import Org
from tests.dataset_helpers import comment, source
from tests.state_helpers import state
from tests.world_helpers import record_request, world


async def _project_class(org: Org) -> tuple[int, PracticeClass]:
    project = await org.project()
    made = await org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(project_id=project.id, name="Local", model_names=["m"])
        )
    )
    return project.id, made


async def test_every_project_rule_names_how_its_project_is_found() -> None:
    served = {
        f"/{s.descriptor.full_name}/{m.name}" for s in app.SERVICES for m in s.descriptor.methods
    }
    for path, rule in RULES.items():
        if rule.scope is not Scope.PROJECT:
            continue
        assert path in served, path
        method = descriptor_pool.Default().FindMethodByName(path.strip("/").replace("/", "."))
        if rule.project_field is not None:
            assert rule.lookup is None, path
            assert rule.project_field in method.input_type.fields_by_name, path
        else:
            assert rule.lookup in auth.registered_lookups(), path


async def test_a_lookup_that_checks_nothing_answers_internal_and_the_handler_never_runs(
    org: Org, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, made = await _project_class(org)
    _, outsider = await org.user()

    async def forgotten(project_id: int | None, *, organization_checked: bool) -> None:
        return None

    monkeypatch.setattr(practice_catalog, "authorize_scope", forgotten)
    with caplog.at_level(logging.ERROR, "corrigo.auth"), pytest.raises(CorrigoError) as err:
        await outsider.catalog.UpdatePracticeClass(
            practice_pb2.UpdatePracticeClassRequest(
                class_id=made.class_id, practice_class=PracticeClass(name="Renamed")
            )
        )
    assert err.value.code == grpc.StatusCode.INTERNAL
    assert "Local" not in err.value.message
    error_id = err.value.error_metadata["error_id"]
    logged = [r.getMessage() for r in caplog.records]
    assert any("UpdatePracticeClass's rule found no project" in m and error_id in m for m in logged)
    monkeypatch.undo()
    got = await org.admin.catalog.GetPracticeClass(
        practice_pb2.GetPracticeClassRequest(class_id=made.class_id)
    )
    assert got.name == "Local"


async def test_another_users_session_is_not_found_before_anything_is_written(org: Org) -> None:
    w = await world(org)
    _, other = await org.user()
    before = await state()
    with pytest.raises(CorrigoError) as err:
        await other.practice.RecordResponse(record_request(w))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert await state() == before


async def test_another_organizations_item_is_not_found_before_anything_is_written(
    org: Org, other_org: Org
) -> None:
    _, made = await _project_class(org)
    before = await state()
    with pytest.raises(CorrigoError) as err:
        await other_org.admin.catalog.DeletePracticeClass(
            practice_pb2.DeletePracticeClassRequest(class_id=made.class_id)
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert await state() == before


async def test_a_caller_without_the_permission_is_denied_before_anything_is_written(
    org: Org,
) -> None:
    project_id, made = await _project_class(org)
    _, annotator = await org.member(project_id, Member.ANNOTATOR)
    before = await state()
    with pytest.raises(CorrigoError) as err:
        await annotator.catalog.DeletePracticeClass(
            practice_pb2.DeletePracticeClassRequest(class_id=made.class_id)
        )
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert await state() == before


async def test_a_client_stream_is_checked_on_its_first_message(org: Org) -> None:
    project = await org.project()
    await source(org.admin, project.name, "inbox")
    _, viewer = await org.member(project.id, Member.VIEWER)

    async def chunks(owner: str) -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
        yield sources_pb2.StreamSyncCommentsRequest(
            owner=owner, name="inbox", comments=[comment("c1")]
        )

    before = await state()
    for owner in (project.name, "no-such-project"):
        with pytest.raises(CorrigoError) as err:
            _ = [r async for r in viewer.sources.StreamSyncComments(chunks(owner))]
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(CorrigoError) as err:
        _ = [r async for r in org.admin.sources.StreamSyncComments(chunks("no-such-project"))]
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert await state() == before


async def test_calls_that_check_or_touch_no_project_are_answered(org: Org) -> None:
    project_id, made = await _project_class(org)
    _, annotator = await org.member(project_id, Member.ANNOTATOR)
    got = await annotator.catalog.GetPracticeClass(
        practice_pb2.GetPracticeClassRequest(class_id=made.class_id)
    )
    assert got == made
    # Organization-wide items only: no project to check, every user may read them.
    listed = await annotator.catalog.ListPracticeClasses(practice_pb2.ListPracticeClassesRequest())
    assert made.class_id not in [c.class_id for c in listed.practice_classes]

    # An empty bulk sync names no project: it is answered with nothing, as before.
    async def nothing() -> AsyncIterator[sources_pb2.StreamSyncCommentsRequest]:
        return
        yield

    assert [r async for r in org.admin.sources.StreamSyncComments(nothing())] == []
