"""Who may do what with a session, live and over REST.

One place for the authorization table of the protocol. Another center's
session is reported as not found, never as forbidden, so its existence
does not leak across tenants.
"""

from __future__ import annotations

from collections.abc import Sequence

from persistence.models import CourseSession, LiveSession
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.identity import Identity, Role
from realtime.gateway.membership import LiveRole

OBSERVER_ROLES = frozenset({Role.SUPERVISOR, Role.CENTER_ADMIN, Role.SUPER_ADMIN})
SESSION_CREATOR_ROLES = frozenset({Role.TUTOR, Role.CENTER_ADMIN, Role.SUPER_ADMIN})


def in_tenant(identity: Identity, center_id: str) -> bool:
    return identity.role is Role.SUPER_ADMIN or identity.center == center_id


def visible_session(
    identity: Identity, session: LiveSession | None, session_id: str
) -> LiveSession:
    """The session, or NOT_FOUND when it does not exist or belongs to another center."""
    if session is None or not in_tenant(identity, session.center_id):
        raise not_found("session", session_id)
    return session


def can_manage(identity: Identity, session: LiveSession) -> bool:
    """Tutors manage their own sessions; center admins any in their center; super admins any."""
    if identity.role is Role.SUPER_ADMIN:
        return True
    if identity.center != session.center_id:
        return False
    if identity.role is Role.CENTER_ADMIN:
        return True
    return identity.role is Role.TUTOR and identity.user_id == session.tutor_id


def require_manager(identity: Identity, session: LiveSession) -> None:
    if not can_manage(identity, session):
        raise HubError(
            ErrorCode.FORBIDDEN,
            f"role {identity.role.value} may not manage session {session.id!r}; "
            "expected its tutor, a center admin or a super admin",
        )


def can_read_roster(identity: Identity, session: LiveSession) -> bool:
    """Managers and the center's supervisors see the whole roster."""
    return can_manage(identity, session) or (
        identity.role is Role.SUPERVISOR and identity.center == session.center_id
    )


def can_assess(identity: Identity, session: LiveSession) -> bool:
    """An assessor of the session's center reads its students' work and assesses it."""
    return identity.role is Role.ASSESSOR and identity.center == session.center_id


def can_read_work(identity: Identity, session: LiveSession) -> bool:
    """The students' work (enrollments, canvases): the roster's readers and assessors."""
    return can_read_roster(identity, session) or can_assess(identity, session)


def require_student_reader(identity: Identity, session: LiveSession, student_id: str) -> None:
    """A student's data (enrollment, canvas) is read by the session's staff, its center's
    assessors and by that student; anyone else is FORBIDDEN."""
    own = identity.role is Role.STUDENT and identity.user_id == student_id
    if not (own or can_read_work(identity, session)):
        raise HubError(ErrorCode.FORBIDDEN, "a student may only read their own data")


def family_scope(identity: Identity, children: Sequence[str], enrolled: Sequence[str]) -> list[str]:
    """A parent's children among a session's enrolled students (their records are the
    parent's to read); none is FORBIDDEN, as for anyone else outside the session."""
    if identity.role is not Role.PARENT:
        raise HubError(ErrorCode.FORBIDDEN, "not a member of this session")
    mine = sorted(set(children) & set(enrolled))
    if not mine:
        raise HubError(ErrorCode.FORBIDDEN, "no child of this parent is in this session")
    return mine


def live_role(identity: Identity, session: LiveSession, *, enrolled: bool) -> LiveRole:
    """The caller's part in a live session, or the refusal of the protocol's table."""
    visible_session(identity, session, session.id)
    if identity.role is Role.TUTOR:
        if identity.user_id == session.tutor_id:
            return LiveRole.TUTOR
        raise HubError(ErrorCode.FORBIDDEN, "only the session's own tutor may join as tutor")
    if identity.role in OBSERVER_ROLES:
        return LiveRole.OBSERVER
    if identity.role is Role.STUDENT:
        if enrolled:
            return LiveRole.STUDENT
        raise HubError(ErrorCode.FORBIDDEN, "student is not enrolled in this session")
    raise HubError(ErrorCode.FORBIDDEN, f"role {identity.role.value} has no live access")


# Course sessions (/api/v1/teacher|student|admin/sessions).

COURSE_STAFF_ROLES = frozenset({Role.TUTOR, Role.CENTER_ADMIN, Role.SUPER_ADMIN})
COURSE_ADMIN_ROLES = frozenset({Role.CENTER_ADMIN, Role.SUPER_ADMIN})
# Read a center's course sessions without managing them: supervisors (read-only across
# the center) and assessors (who grade their enrollments).
COURSE_READER_ROLES = frozenset({Role.SUPERVISOR, Role.ASSESSOR})


def course_not_found(session_id: str) -> HubError:
    return HubError(
        ErrorCode.NOT_FOUND,
        f"Course session with ID {session_id} not found",
        error_code="SESSION_NOT_FOUND",
    )


def visible_course_session(
    identity: Identity, session: CourseSession | None, session_id: str
) -> CourseSession:
    """The course session, or SESSION_NOT_FOUND when missing, deleted or another center's."""
    if session is None or session.is_deleted or not in_tenant(identity, session.center_id):
        raise course_not_found(session_id)
    return session


def require_course_staff(identity: Identity) -> None:
    if identity.role not in COURSE_STAFF_ROLES:
        raise HubError(
            ErrorCode.FORBIDDEN,
            f"role {identity.role.value} may not manage course sessions; "
            "expected TUTOR, CENTER_ADMIN or SUPER_ADMIN",
        )


def require_course_admin(identity: Identity) -> None:
    if identity.role not in COURSE_ADMIN_ROLES:
        raise HubError(
            ErrorCode.FORBIDDEN,
            f"role {identity.role.value} may not do this; expected CENTER_ADMIN or SUPER_ADMIN",
        )


def require_course_manager(identity: Identity, session: CourseSession) -> None:
    """Its teacher, a center admin of its center, any super admin."""
    require_course_staff(identity)
    if identity.role is Role.TUTOR and identity.user_id != session.teacher_id:
        raise HubError(ErrorCode.FORBIDDEN, "You can only manage your own course sessions")


def require_course_reader(identity: Identity, session: CourseSession) -> None:
    """Its managers, and the supervisors and assessors of its center."""
    if identity.role in COURSE_READER_ROLES and identity.center == session.center_id:
        return
    require_course_manager(identity, session)


def require_course_grader(identity: Identity, session: CourseSession) -> None:
    """Its managers, and the assessors of its center."""
    if identity.role is Role.ASSESSOR and identity.center == session.center_id:
        return
    require_course_manager(identity, session)


def require_course_student(identity: Identity) -> None:
    if identity.role is not Role.STUDENT:
        raise HubError(
            ErrorCode.FORBIDDEN, f"role {identity.role.value} may not use the student routes"
        )
