"""The center's view: every course session, and one session's analytics (live attendance too)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from typing_extensions import TypedDict

from persistence.course_views import CourseSessionView
from persistence.models import (
    CourseSessionEnrollment,
)
from persistence.repositories import (
    CourseEnrollmentRepository,
    CourseSessionRepository,
)
from persistence.views import IsoDate
from realtime.base.identity import Role
from rest.courses.common import (
    ADMIN,
    S,
    answer,
    center_listing,
    query_of,
    readable,
)
from rest.http import identity
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import CourseSessionListQuery
from rooms.access import (
    require_course_admin,
)

routes = web.RouteTableDef()


class Overview(TypedDict):
    total_enrolled: int
    pending_requests: int
    completion_rate: float
    average_grade: float | None
    dropout_rate: float
    active_students: int


class TimelineDay(TypedDict):
    date: IsoDate
    enrollments: int


class Performance(TypedDict):
    average_completion_percentage: float
    students_above_80_percent: int
    students_below_50_percent: int


class LiveAttendance(TypedDict):
    """Attendance in the live sessions that met for the course session."""

    live_sessions: int
    records: int
    by_status: dict[str, int]
    attendance_rate: float


class Analytics(TypedDict):
    session_overview: Overview
    enrollment_timeline: list[TimelineDay]
    performance_metrics: Performance
    live_attendance: LiveAttendance


# --- Admin -------------------------------------------------------------------------------


@routes.get(ADMIN)
@documented(CourseSessionView, query=CourseSessionListQuery, envelope=Envelope.PAGE)
async def list_admin_sessions(request: web.Request) -> web.Response:
    """Every course session of the center (its admins and supervisors)."""
    who = identity(request)
    if who.role is not Role.SUPERVISOR:
        require_course_admin(who)
    params = query_of(request, CourseSessionListQuery)
    return await center_listing(request, params, teacher_id=params.teacher_id)


@routes.get(ADMIN + "/{session_id}/analytics")
@documented(Analytics)
async def session_analytics(request: web.Request) -> web.Response:
    """A course session's enrollment, completion, grades and live attendance."""
    async with request.app[DB]() as db:
        session = await readable(request, db)
        enrollments = await CourseEnrollmentRepository(db).all(session.id)
        sessions = CourseSessionRepository(db)
        live = await sessions.live_sessions(session.id)
        attendance = await sessions.live_attendance(session.id)
    return answer(analytics(enrollments, len(live), attendance))


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def analytics(
    enrollments: list[CourseSessionEnrollment] | Any, live_sessions: int, attendance: dict[str, int]
) -> Analytics:
    admitted = [e for e in enrollments if e.status != S.PENDING]
    left = [e for e in admitted if e.status in (S.DROPPED, S.EXPELLED)]
    active = [e for e in admitted if e.status in (S.ENROLLED, S.COMPLETED)]
    completed = [e for e in admitted if e.status == S.COMPLETED]
    grades = [e.final_grade for e in admitted if e.final_grade is not None]
    timeline: dict[str, int] = {}
    for e in enrollments:
        day = e.enrolled_at.date().isoformat()
        timeline[day] = timeline.get(day, 0) + 1
    progress = [e.completion_percentage for e in active]
    records = sum(attendance.values())
    attended = attendance.get("PRESENT", 0) + attendance.get("LATE", 0)
    return {
        "session_overview": {
            "total_enrolled": len(admitted),
            "pending_requests": len(enrollments) - len(admitted),
            "completion_rate": _pct(len(completed), len(admitted)),
            "average_grade": round(sum(grades) / len(grades), 1) if grades else None,
            "dropout_rate": _pct(len(left), len(admitted)),
            "active_students": len(active),
        },
        "enrollment_timeline": [
            {"date": day, "enrollments": n} for day, n in sorted(timeline.items())
        ],
        "performance_metrics": {
            "average_completion_percentage": (
                round(sum(progress) / len(progress), 1) if progress else 0.0
            ),
            "students_above_80_percent": sum(1 for p in progress if p >= 80),
            "students_below_50_percent": sum(1 for p in progress if p < 50),
        },
        "live_attendance": {
            "live_sessions": live_sessions,
            "records": records,
            "by_status": dict(sorted(attendance.items())),
            "attendance_rate": _pct(attended, records),
        },
    }
