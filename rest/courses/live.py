"""Live sessions meeting for a course session: enroll its ENROLLED students in one call."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from typing_extensions import TypedDict

from persistence.models import Enrollment
from persistence.repositories import (
    CourseEnrollmentRepository,
    CourseSessionRepository,
    EnrollmentRepository,
    PeopleRepository,
    SessionRepository,
)
from persistence.views import EnrollmentView, enrollment_view
from realtime.base.errors import ErrorCode, HubError
from rest.courses.common import (
    S,
    answer,
    audit,
)
from rest.http import identity
from rest.keys import DB
from rest.openapi import documented
from rest.sessions import readable_session, require_open
from rooms.access import require_manager

routes = web.RouteTableDef()


class FromCourse(TypedDict):
    """The live session's new enrollments, and the students it already had."""

    session_id: str
    course_session_id: str
    added: list[EnrollmentView]
    already_enrolled: list[str]


# --- Live sessions meeting for a course session ------------------------------------------


@routes.post("/api/v1/sessions/{session_id}/enrollments/from-course")
@documented(FromCourse, status=201)
async def enroll_from_course(request: web.Request) -> web.Response:
    """Enroll in a live session, in one call, every student ENROLLED in the course session
    it meets for (those already in it are left as they are); all or nothing."""
    who = identity(request)
    try:
        async with request.app[DB].begin() as db:
            live_sessions = SessionRepository(db)
            live = await readable_session(request, live_sessions)
            require_manager(who, live)
            await live_sessions.get(live.id, for_update=True)
            require_open(live)
            if live.course_session_id is None:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session {live.id!r} meets for no course session",
                    error_code="NO_COURSE_SESSION",
                )
            course = await CourseSessionRepository(db).get(live.course_session_id)
            if course is None:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session {live.id!r} meets for a deleted course session",
                    error_code="NO_COURSE_SESSION",
                )
            enrolled = [
                e.student_id
                for e in await CourseEnrollmentRepository(db).all(course.id)
                if e.status == S.ENROLLED
            ]
            live_enrollments = EnrollmentRepository(db)
            present = {e.student_id for e in await live_enrollments.for_session(live.id)}
            new = [s for s in enrolled if s not in present]
            if len(present) + len(new) > live.max_students:
                raise HubError(
                    ErrorCode.CONFLICT,
                    f"session is full ({live.max_students} students): {len(present)} enrolled, "
                    f"{len(new)} more from the course session",
                    error_code="SESSION_FULL",
                )
            people = await PeopleRepository(db).by_ids(live.center_id, new)
            added = []
            for student_id in new:
                person = people.get(student_id)
                enrollment = Enrollment(
                    center_id=live.center_id,
                    session_id=live.id,
                    student_id=student_id,
                    student_name=person.name if person is not None else None,
                    course_id=course.course_id,
                    completed=False,
                )
                live_enrollments.add(enrollment)
                await db.flush()
                audit(
                    request,
                    db,
                    who,
                    "enrollment.add",
                    live.center_id,
                    "enrollment",
                    enrollment.id,
                    {
                        "session_id": live.id,
                        "student_id": student_id,
                        "course_session_id": course.id,
                    },
                )
                added.append(enrollment)
    except IntegrityError:
        # A concurrent add of one of them: nothing of this call was kept.
        raise HubError(
            ErrorCode.CONFLICT,
            "the session's enrollments changed meanwhile; retry",
            error_code="ENROLLMENT_EXISTS",
        ) from None
    return answer(
        FromCourse(
            session_id=live.id,
            course_session_id=course.id,
            added=[enrollment_view(e) for e in added],
            already_enrolled=sorted(present & set(enrolled)),
        ),
        status=201,
        message=f"{len(added)} students enrolled from the course session",
    )
