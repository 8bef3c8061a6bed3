"""How rows look on the wire, shared by the REST layer and the Socket.IO acks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, overload

from pydantic import WithJsonSchema
from typing_extensions import TypedDict

from persistence.models import AttendanceRecord, Enrollment, LiveSession, TutorNote

# A moment as the wire carries it: ISO 8601 in UTC, "Z" for +00:00.
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
# A calendar day, ISO 8601 ("2026-12-06").
IsoDate = Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class SessionView(TypedDict):
    """A live session."""

    id: str
    center_id: str
    title: str
    tutor_id: str
    starts_at: IsoTime
    ends_at: IsoTime
    started_at: IsoTime | None
    ended_at: IsoTime | None
    status: str
    max_students: int
    idle_after_s: int | None
    course_session_id: str | None
    created_by: str
    created_at: IsoTime
    updated_at: IsoTime


class EnrollmentView(TypedDict):
    """A student's enrollment in a live session: their course, lesson, work and mode."""

    id: str
    session_id: str
    center_id: str
    student_id: str
    student_name: str | None
    course_id: str | None
    lesson_id: str | None
    level: str | None
    exercise_content: Any
    assessment_data: Any
    completed: bool
    notes: str | None
    mode: str
    assignment: Any
    created_at: IsoTime
    updated_at: IsoTime


class NoteView(TypedDict):
    id: str
    session_id: str
    student_id: str | None
    author_id: str
    text: str
    visibility: str
    created_at: IsoTime


class AttendanceView(TypedDict):
    """A student's attendance in a live session (the ``attendance:update`` payload)."""

    student_id: str
    status: str
    joined_at: IsoTime | None
    left_at: IsoTime | None
    marked_by: str | None
    notes: str | None


def session_view(session: LiveSession) -> SessionView:
    return {
        "id": session.id,
        "center_id": session.center_id,
        "title": session.title,
        "tutor_id": session.tutor_id,
        "starts_at": iso(session.starts_at),
        "ends_at": iso(session.ends_at),
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at),
        "status": session.status,
        "max_students": session.max_students,
        "idle_after_s": (session.settings or {}).get("idle_after_s"),
        "course_session_id": session.course_session_id,
        "created_by": session.created_by,
        "created_at": iso(session.created_at),
        "updated_at": iso(session.updated_at),
    }


def enrollment_view(enrollment: Enrollment) -> EnrollmentView:
    return {
        "id": enrollment.id,
        "session_id": enrollment.session_id,
        "center_id": enrollment.center_id,
        "student_id": enrollment.student_id,
        "student_name": enrollment.student_name,
        "course_id": enrollment.course_id,
        "lesson_id": enrollment.lesson_id,
        "level": enrollment.level,
        "exercise_content": enrollment.exercise_content,
        "assessment_data": enrollment.assessment_data,
        "completed": enrollment.completed,
        "notes": enrollment.notes,
        "mode": enrollment.mode,
        "assignment": enrollment.assignment,
        "created_at": iso(enrollment.created_at),
        "updated_at": iso(enrollment.updated_at),
    }


def note_view(note: TutorNote) -> NoteView:
    return {
        "id": note.id,
        "session_id": note.session_id,
        "student_id": note.student_id,
        "author_id": note.author_id,
        "text": note.text,
        "visibility": note.visibility,
        "created_at": iso(note.created_at),
    }


def attendance_view(record: AttendanceRecord) -> AttendanceView:
    """The ``attendance:update`` payload (without ``session_id``)."""
    return {
        "student_id": record.student_id,
        "status": record.status,
        "joined_at": iso(record.first_joined_at),
        "left_at": iso(record.last_left_at),
        "marked_by": record.marked_by,
        "notes": record.notes,
    }
