"""How course sessions and their rows look on the wire (the design's field names).

``tenant_id`` is the center; every status of a course session is the one it
reads as at ``now`` (EXPIRED once past ``end_date`` with auto-expiry).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NotRequired

from typing_extensions import TypedDict

from persistence.models import (
    CourseSession,
    CourseSessionAnnouncement,
    CourseSessionEnrollment,
    CourseSessionSettings,
    Person,
)
from persistence.views import IsoTime, iso


class CourseSessionView(TypedDict):
    """A course session (the design's fields); ``enrolled_count`` where staff list or
    read one."""

    course_session_id: str
    tenant_id: str
    session_name: str
    session_description: str | None
    teacher_id: str
    course_id: str
    course_session_status: str
    start_date: IsoTime
    end_date: IsoTime
    max_students: int | None
    enrollment_deadline: IsoTime | None
    session_timezone: str | None
    session_code: str
    auto_expire_enabled: bool
    published_at: IsoTime | None
    is_active: bool
    is_deleted: bool
    created_at: IsoTime
    created_by: str
    updated_at: IsoTime
    updated_by: str | None
    enrolled_count: NotRequired[int]
    # Staff answers: the live cohorts the session is offered to.
    cohort_ids: NotRequired[list[str]]


class StudentContact(TypedDict):
    full_name: str | None
    email_address: str | None


class CourseEnrollmentView(TypedDict):
    """A student's enrollment in a course session; ``student`` in staff lists."""

    course_session_enrollment_id: str
    course_session_id: str
    tenant_id: str
    student_id: str
    enrolled_at: IsoTime
    enrollment_status: str
    completion_percentage: float
    final_grade: float | None
    completion_date: IsoTime | None
    dropped_at: IsoTime | None
    updated_at: IsoTime
    student: NotRequired[StudentContact]


class StudentSessionView(TypedDict):
    """A course session as one of its students sees it, with their enrollment; or
    offered through their cohorts (``via_cohort_ids``) and not joined: the
    enrollment's fields are null and ``session_code`` is how they join."""

    course_session_id: str
    course_session_enrollment_id: str | None
    session_name: str
    session_description: str | None
    teacher_id: str
    course_id: str
    course_session_status: str
    enrollment_status: str | None
    completion_percentage: float | None
    final_grade: float | None
    enrolled_at: IsoTime | None
    start_date: IsoTime
    end_date: IsoTime
    session_timezone: str | None
    session_code: str
    via_cohort_ids: list[str]


class StudentSessionDetail(StudentSessionView):
    max_students: int | None
    enrollment_deadline: IsoTime | None


class AnnouncementView(TypedDict):
    course_session_announcement_id: str
    course_session_id: str
    tenant_id: str
    title: str
    message: str
    is_urgent: bool
    scheduled_for: IsoTime | None
    expires_at: IsoTime | None
    is_active: bool
    created_at: IsoTime
    created_by: str
    updated_at: IsoTime


class SettingsView(TypedDict):
    course_session_settings_id: str
    course_session_id: str
    tenant_id: str
    allow_late_enrollment: bool
    require_approval_for_enrollment: bool
    allow_student_discussions: bool
    allow_student_drop: bool
    send_reminder_emails: bool
    reminder_days_before_expiry: int
    grading_scale: Any
    attendance_tracking_enabled: bool
    updated_at: IsoTime


def course_session_view(
    session: CourseSession,
    now: datetime,
    *,
    enrolled_count: int | None = None,
    cohort_ids: Sequence[str] | None = None,
) -> CourseSessionView:
    view: CourseSessionView = {
        "course_session_id": session.id,
        "tenant_id": session.center_id,
        "session_name": session.session_name,
        "session_description": session.session_description,
        "teacher_id": session.teacher_id,
        "course_id": session.course_id,
        "course_session_status": session.effective_status(now),
        "start_date": iso(session.start_date),
        "end_date": iso(session.end_date),
        "max_students": session.max_students,
        "enrollment_deadline": iso(session.enrollment_deadline),
        "session_timezone": session.session_timezone,
        "session_code": session.session_code,
        "auto_expire_enabled": session.auto_expire_enabled,
        "published_at": iso(session.published_at),
        "is_active": session.is_active,
        "is_deleted": session.is_deleted,
        "created_at": iso(session.created_at),
        "created_by": session.created_by,
        "updated_at": iso(session.updated_at),
        "updated_by": session.updated_by,
    }
    if enrolled_count is not None:
        view["enrolled_count"] = enrolled_count
    if cohort_ids is not None:
        view["cohort_ids"] = list(cohort_ids)
    return view


def course_enrollment_view(
    enrollment: CourseSessionEnrollment, person: Person | None = None, *, with_student: bool = False
) -> CourseEnrollmentView:
    view: CourseEnrollmentView = {
        "course_session_enrollment_id": enrollment.id,
        "course_session_id": enrollment.course_session_id,
        "tenant_id": enrollment.center_id,
        "student_id": enrollment.student_id,
        "enrolled_at": iso(enrollment.enrolled_at),
        "enrollment_status": enrollment.status,
        "completion_percentage": enrollment.completion_percentage,
        "final_grade": enrollment.final_grade,
        "completion_date": iso(enrollment.completion_date),
        "dropped_at": iso(enrollment.dropped_at),
        "updated_at": iso(enrollment.updated_at),
    }
    if with_student:
        view["student"] = {
            "full_name": person.name if person is not None else None,
            "email_address": person.email if person is not None else None,
        }
    return view


def student_session_view(
    enrollment: CourseSessionEnrollment | None,
    session: CourseSession,
    now: datetime,
    via_cohort_ids: Sequence[str] = (),
) -> StudentSessionView:
    """A session as its student sees it. ``enrollment`` None: offered through their cohorts
    (``via_cohort_ids``, only ever the student's own) and not joined, so the enrollment's
    fields are null and ``session_code`` is how they join."""
    return {
        "course_session_id": session.id,
        "course_session_enrollment_id": enrollment.id if enrollment else None,
        "session_name": session.session_name,
        "session_description": session.session_description,
        "teacher_id": session.teacher_id,
        "course_id": session.course_id,
        "course_session_status": session.effective_status(now),
        "enrollment_status": enrollment.status if enrollment else None,
        "completion_percentage": enrollment.completion_percentage if enrollment else None,
        "final_grade": enrollment.final_grade if enrollment else None,
        "enrolled_at": iso(enrollment.enrolled_at) if enrollment else None,
        "start_date": iso(session.start_date),
        "end_date": iso(session.end_date),
        "session_timezone": session.session_timezone,
        "session_code": session.session_code,
        "via_cohort_ids": list(via_cohort_ids),
    }


def announcement_view(announcement: CourseSessionAnnouncement) -> AnnouncementView:
    return {
        "course_session_announcement_id": announcement.id,
        "course_session_id": announcement.course_session_id,
        "tenant_id": announcement.center_id,
        "title": announcement.title,
        "message": announcement.message,
        "is_urgent": announcement.is_urgent,
        "scheduled_for": iso(announcement.scheduled_for),
        "expires_at": iso(announcement.expires_at),
        "is_active": announcement.is_active,
        "created_at": iso(announcement.created_at),
        "created_by": announcement.created_by,
        "updated_at": iso(announcement.updated_at),
    }


def settings_view(settings: CourseSessionSettings) -> SettingsView:
    return {
        "course_session_settings_id": settings.id,
        "course_session_id": settings.course_session_id,
        "tenant_id": settings.center_id,
        "allow_late_enrollment": settings.allow_late_enrollment,
        "require_approval_for_enrollment": settings.require_approval_for_enrollment,
        "allow_student_discussions": settings.allow_student_discussions,
        "allow_student_drop": settings.allow_student_drop,
        "send_reminder_emails": settings.send_reminder_emails,
        "reminder_days_before_expiry": settings.reminder_days_before_expiry,
        "grading_scale": settings.grading_scale,
        "attendance_tracking_enabled": settings.attendance_tracking_enabled,
        "updated_at": iso(settings.updated_at),
    }
