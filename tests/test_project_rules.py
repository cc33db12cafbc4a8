"""PROJECT rules without a request field fail closed: a handler that ends without having
checked its project's permission is answered INTERNAL (a logged bug), never with its answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from corrigo.client.errors import CorrigoError
from corrigo.server.services import practice_catalog
from corrigo.v1 import practice_pb2, sources_pb2
from corrigo.v1.admin_pb2 import Member
from corrigo.v1.practice_pb2 import PracticeClass
from tests.conftest import Org


async def _project_class(org: Org) -> tuple[int, PracticeClass]:
    project = await org.project()
    made = await org.admin.catalog.CreatePracticeClass(
        practice_pb2.CreatePracticeClassRequest(
            practice_class=PracticeClass(project_id=project.id, name="Local", model_names=["m"])
        )
    )
    return project.id, made


async def test_a_handler_that_forgets_the_project_check_answers_internal(
    org: Org, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, made = await _project_class(org)
    _, outsider = await org.user()

    async def forgotten(project_id: int | None, *, organization_checked: bool) -> None:
        return None

    monkeypatch.setattr(practice_catalog, "authorize_scope", forgotten)
    with caplog.at_level(logging.ERROR, "corrigo.auth"), pytest.raises(CorrigoError) as err:
        await outsider.catalog.GetPracticeClass(
            practice_pb2.GetPracticeClassRequest(class_id=made.class_id)
        )
    assert err.value.code == grpc.StatusCode.INTERNAL
    assert "Local" not in err.value.message
    error_id = err.value.error_metadata["error_id"]
    logged = [r.getMessage() for r in caplog.records]
    assert any("GetPracticeClass returned without checking" in m and error_id in m for m in logged)


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
