"""A student's side: join by code, list and read one's course sessions, drop, read announcements."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.course_views import (
    AnnouncementView,
    CourseEnrollmentView,
    StudentSessionDetail,
    StudentSessionView,
    announcement_view,
    course_enrollment_view,
    student_session_view,
)
from persistence.models import (
    SEATED,
    CourseSession,
    CourseSessionEnrollment,
    CourseSessionStatus,
    utcnow,
)
from persistence.repositories import (
    AnnouncementRepository,
    CohortMembers,
    CourseEnrollmentRepository,
    CourseSessionCohorts,
    CourseSessionRepository,
    Page,
    ParentLinks,
)
from persistence.views import iso
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Identity, Role
from rest.courses.common import (
    READERS,
    STUDENT,
    S,
    answer,
    audit,
    bad_request,
    body_of,
    conflict,
    course_session,
    created,
    expired,
    query_of,
    require_seat,
    settings_of,
    touched,
    unprocessable,
)
from rest.http import identity, listing
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import (
    JoinByCode,
    StudentAnnouncementQuery,
    StudentSessionListQuery,
)
from rooms.access import require_course_student

routes = web.RouteTableDef()


# --- Students ----------------------------------------------------------------------------


def _invalid_code() -> HubError:
    return conflict("Invalid session code", "INVALID_SESSION_CODE", "session_code")


@routes.post(STUDENT + "/join")
@documented(CourseEnrollmentView, body=JoinByCode, status=201)
async def join_by_code(request: web.Request) -> web.Response:
    """Join a course session by its code (PENDING where staff approve joins)."""
    who = identity(request)
    require_course_student(who)
    body = await body_of(request, JoinByCode)
    code = body.session_code.strip().upper()
    now = utcnow()
    try:
        async with request.app[DB].begin() as db:
            sessions = CourseSessionRepository(db)
            found = await sessions.by_code(code)
            if found is None or found.center_id != who.center:
                raise _invalid_code()
            # Lock the session so concurrent joins cannot overfill it (Postgres; SQLite
            # writers are serialized).
            session = await sessions.get(found.id, for_update=True)
            if session is None:
                raise _invalid_code()
            status = session.effective_status(now)
            if status == CourseSessionStatus.EXPIRED:
                raise expired(session)
            if status != CourseSessionStatus.PUBLISHED:
                raise _invalid_code()  # a draft is not open to anyone yet
            settings = await settings_of(db, session)
            enrollments = CourseEnrollmentRepository(db)
            enrollment = await enrollments.get(session.id, who.user_id)
            if enrollment is not None and enrollment.status in SEATED:
                raise conflict("Student already enrolled in this session", "ALREADY_ENROLLED")
            if enrollment is not None and enrollment.status == S.EXPELLED:
                raise HubError(
                    ErrorCode.FORBIDDEN,
                    "an expelled student cannot join this session again",
                    error_code="ENROLLMENT_EXPELLED",
                )
            if (
                session.enrollment_deadline is not None
                and now > session.enrollment_deadline
                and not settings.allow_late_enrollment
            ):
                raise bad_request(
                    "Cannot enroll after enrollment deadline",
                    error_code="ENROLLMENT_DEADLINE_PASSED",
                )
            await require_seat(db, session)
            new_status = S.PENDING if settings.require_approval_for_enrollment else S.ENROLLED
            if enrollment is None:
                enrollment = CourseSessionEnrollment(
                    center_id=session.center_id,
                    course_session_id=session.id,
                    student_id=who.user_id,
                    enrolled_at=now,
                    status=new_status.value,
                    completion_percentage=0,
                    **created(request, who),
                )
                db.add(enrollment)
                await db.flush()
            else:  # came back after dropping
                enrollment.status = new_status.value
                enrollment.enrolled_at = now
                enrollment.dropped_at = None
                touched(enrollment, request, who)
            audit(
                request,
                db,
                who,
                "course_enrollment.join",
                session.center_id,
                "course_enrollment",
                enrollment.id,
                {"course_session_id": session.id, "status": new_status.value},
            )
    except IntegrityError:
        raise conflict("Student already enrolled in this session", "ALREADY_ENROLLED") from None
    message = (
        "Enrollment requested; it awaits approval"
        if new_status is S.PENDING
        else "Successfully enrolled in session"
    )
    return answer(course_enrollment_view(enrollment), status=201, message=message)


@routes.get(STUDENT)
@documented(StudentSessionView, query=StudentSessionListQuery, envelope=Envelope.PAGE)
async def list_student_sessions(request: web.Request) -> web.Response:
    """The sessions the student has an enrollment in, and the published ones offered to
    their live cohorts that they have not joined (``enrollment_status`` null); a parent
    reads their linked child's (``student_id``)."""
    who = identity(request)
    params = query_of(request, StudentSessionListQuery)
    page = Page(params.page, params.limit)
    now = utcnow()
    async with request.app[DB]() as db:
        student = await whose(db, who, params.student_id)
        cohort_ids = await CohortMembers(db).cohorts_of(who.center, student)
        rows, total = await CourseEnrollmentRepository(db).of_student(
            who.center,
            student,
            page,
            now=now,
            status=params.status.value if params.status else None,
            active_only=params.active_only,
            cohort_ids=cohort_ids,
        )
        via = await CourseSessionCohorts(db).through((s.id for _, s in rows), cohort_ids)
    return listing([student_session_view(e, s, now, via[s.id]) for e, s in rows], page, total)


async def whose(db: AsyncSession, who: Identity, student_id: str | None) -> str:
    """The student a student route reads: the calling student, or the linked child a
    parent names (``student_id``); anyone else is FORBIDDEN."""
    if who.role is Role.PARENT:
        if student_id is None:
            raise bad_request("a parent names their child: student_id", "student_id")
        if not await ParentLinks(db).is_parent(who.center, who.user_id, student_id):
            raise HubError(ErrorCode.FORBIDDEN, f"{student_id!r} is not a child of this parent")
        return student_id
    require_course_student(who)
    if student_id not in (None, who.user_id):
        raise HubError(ErrorCode.FORBIDDEN, "Students can only read their own sessions")
    return who.user_id


async def _own_enrollment(
    request: web.Request,
    db: AsyncSession,
    *,
    for_update: bool = False,
    student_id: str | None = None,
) -> tuple[CourseSession, CourseSessionEnrollment]:
    who = identity(request)
    student = await whose(db, who, student_id)
    session = await course_session(request, db, for_update=for_update)
    enrollment = await CourseEnrollmentRepository(db).get(session.id, student)
    if enrollment is None:
        raise HubError(ErrorCode.FORBIDDEN, "Students can only access enrolled sessions")
    return session, enrollment


@routes.get(STUDENT + "/{session_id}")
@documented(StudentSessionDetail)
async def get_student_session(request: web.Request) -> web.Response:
    """Any enrollment of the student's (DROPPED too), or offered to one of their cohorts."""
    who = identity(request)
    require_course_student(who)
    now = utcnow()
    async with request.app[DB]() as db:
        session = await course_session(request, db)
        enrollment = await CourseEnrollmentRepository(db).get(session.id, who.user_id)
        cohort_ids = await CohortMembers(db).cohorts_of(who.center, who.user_id)
        via = (await CourseSessionCohorts(db).through([session.id], cohort_ids))[session.id]
    if enrollment is None and not via:
        raise HubError(ErrorCode.FORBIDDEN, "Students can only access enrolled sessions")
    return answer(
        StudentSessionDetail(
            **student_session_view(enrollment, session, now, via),
            max_students=session.max_students,
            enrollment_deadline=iso(session.enrollment_deadline),
        )
    )


@routes.delete(STUDENT + "/{session_id}/enrollment")
@documented(CourseEnrollmentView)
async def drop_session(request: web.Request) -> web.Response:
    """Drop a course session, where its settings allow (the student; not a parent)."""
    who = identity(request)
    require_course_student(who)
    now = utcnow()
    async with request.app[DB].begin() as db:
        session, enrollment = await _own_enrollment(request, db, for_update=True)
        if session.effective_status(now) == CourseSessionStatus.EXPIRED:
            raise expired(session)
        if enrollment.status not in (S.PENDING, S.ENROLLED):
            raise unprocessable(
                f"an enrollment that is {enrollment.status} cannot be dropped",
                "INVALID_STATUS_TRANSITION",
            )
        settings = await settings_of(db, session)
        if not settings.allow_student_drop:
            raise HubError(
                ErrorCode.FORBIDDEN,
                "this session's settings do not let students drop out",
                error_code="DROP_NOT_ALLOWED",
            )
        before = enrollment.status
        enrollment.status = S.DROPPED.value
        enrollment.dropped_at = now
        touched(enrollment, request, who)
        audit(
            request,
            db,
            who,
            "course_enrollment.drop",
            session.center_id,
            "course_enrollment",
            enrollment.id,
            {"course_session_id": session.id, "from": before},
        )
    return answer(course_enrollment_view(enrollment), message="Dropped from session")


@routes.get(STUDENT + "/{session_id}/announcements")
@documented(AnnouncementView, query=StudentAnnouncementQuery, envelope=Envelope.PAGE)
async def list_student_announcements(request: web.Request) -> web.Response:
    """A course session's announcements visible to its students now (ENROLLED or
    COMPLETED ones); a parent reads those of their linked child's (``student_id``)."""
    params = query_of(request, StudentAnnouncementQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session, enrollment = await _own_enrollment(request, db, student_id=params.student_id)
        if enrollment.status not in READERS:
            raise HubError(
                ErrorCode.FORBIDDEN,
                f"announcements are for enrolled students; this enrollment is {enrollment.status}",
            )
        rows, total = await AnnouncementRepository(db).page(
            session.id, page, now=utcnow(), visible_only=True
        )
    return listing([announcement_view(a) for a in rows], page, total)
