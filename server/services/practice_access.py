"""Who may use what in practice: project scopes and the caller's own sessions.

The lookups of `permissions.Lookup` for practice sessions are here: they find a call's
project before its handler runs, and keep the session they found for it (`own_session`).
"""

from __future__ import annotations

from corrigo.server.api import auth
from corrigo.server.api.errors import NotFound
from corrigo.server.api.permissions import Lookup
from corrigo.server.api.validation import Violations
from corrigo.server.store import practice_sessions, projects
from corrigo.v1 import practice_pb2


def not_found(what: str, field: str, value: int) -> NotFound:
    """NOT_FOUND naming the request field, also in ErrorInfo.metadata["field"]."""
    return NotFound(f"{what} {value} not found ({field})", metadata={"field": field})


async def authorize_scope(project_id: int | None, *, organization_checked: bool) -> None:
    """Check the RPC's permission where an item lives: in the project when `project_id` is
    given (NOT_FOUND naming project_id when the authorized caller names none), else in
    the organization when `organization_checked` (organization-wide items)."""
    if project_id is None:
        if organization_checked:
            await auth.authorize_project(None, "(organization-wide)")
        else:
            auth.touches_no_project()
        return
    project = await projects.find_by_id(auth.current().principal.organization_id, project_id)
    await auth.authorize_project(project, repr(project_id))
    if project is None:
        raise not_found("project", "project_id", project_id)


async def _session_scope(request: practice_pb2.GetPracticeSessionRequest) -> None:
    """Lookup.PRACTICE_SESSION. The one rule for who may act on a practice session, in
    PracticeSessionService and ImprovementService alike: its owner, while they hold the
    RPC's permission (`practice`) in the session's project (a session without a project:
    its owner alone). Another user's session, or one of another organization, is
    NOT_FOUND (also for admins); the owner without the permission in its project is
    PERMISSION_DENIED."""
    checks = Violations()
    checks.id("session_id", request.session_id)
    checks.raise_if_any()
    call = auth.current()
    session = await practice_sessions.get_owned(
        call.principal.organization_id, call.principal.user_id, request.session_id
    )
    if session is None:
        raise NotFound(f"practice session {request.session_id} not found")
    call.found = session
    await authorize_scope(session.project_id, organization_checked=False)


async def _new_session_scope(request: practice_pb2.CreatePracticeSessionRequest) -> None:
    """Lookup.NEW_PRACTICE_SESSION: the project the request names, if any."""
    project_id = None
    if request.HasField("project_id"):
        project_id = request.project_id.value
        checks = Violations()
        checks.stored_id("project_id", project_id)
        checks.raise_if_any()
    await authorize_scope(project_id, organization_checked=False)


def own_session() -> practice_sessions.PracticeSession:
    """The caller's practice session the call's rule found (Lookup.PRACTICE_SESSION)."""
    session = auth.found()
    assert isinstance(session, practice_sessions.PracticeSession), "not a session's RPC"
    return session


auth.register_lookup(Lookup.PRACTICE_SESSION, _session_scope)
auth.register_lookup(Lookup.NEW_PRACTICE_SESSION, _new_session_scope)
