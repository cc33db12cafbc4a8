"""Who may use what in practice: project scopes and the caller's own sessions."""

from __future__ import annotations

from corrigo.server.api import auth
from corrigo.server.api.errors import NotFound
from corrigo.server.api.validation import Violations
from corrigo.server.store import practice_sessions, projects
from corrigo.server.store.projects import Project


def not_found(what: str, field: str, value: int) -> NotFound:
    """NOT_FOUND naming the request field, also in ErrorInfo.metadata["field"]."""
    return NotFound(f"{what} {value} not found ({field})", metadata={"field": field})


async def authorize_scope(project_id: int | None, *, organization_checked: bool) -> Project | None:
    """Check the RPC's permission where an item lives: in the project when `project_id` is
    given (NOT_FOUND naming project_id when the authorized caller names none), else in
    the organization when `organization_checked` (organization-wide items)."""
    if project_id is None:
        if organization_checked:
            await auth.authorize_project(None, "(organization-wide)")
        else:
            auth.touches_no_project()
        return None
    project = await projects.find_by_id(auth.current().principal.organization_id, project_id)
    await auth.authorize_project(project, repr(project_id))
    if project is None:
        raise not_found("project", "project_id", project_id)
    return project


async def own_session(session_id: int) -> practice_sessions.PracticeSession:
    """The one rule for who may act on a practice session, in PracticeSessionService and
    ImprovementService alike: its owner, while they hold the RPC's permission
    (`practice`) in the session's project (a session without a project: its owner
    alone). Another user's session, or one of another organization, is NOT_FOUND (also
    for admins); the owner without the permission in its project is PERMISSION_DENIED."""
    checks = Violations()
    checks.id("session_id", session_id)
    checks.raise_if_any()
    principal = auth.current().principal
    session = await practice_sessions.get_owned(
        principal.organization_id, principal.user_id, session_id
    )
    if session is None:
        raise NotFound(f"practice session {session_id} not found")
    await authorize_scope(session.project_id, organization_checked=False)
    return session
