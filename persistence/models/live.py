"""Live sessions: enrollments, notes, exercise attempts, help, attendance, timers, alerts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import (
    EXTERNAL_ID_LENGTH,
    ID_LENGTH,
    Base,
    JSONDocument,
    UTCDateTime,
    new_id,
    utcnow,
)


class Mode(StrEnum):
    TEACH = "TEACH"
    OBSERVE = "OBSERVE"


class NoteVisibility(StrEnum):
    PRIVATE = "PRIVATE"
    STUDENT = "STUDENT"
    PARENT = "PARENT"


class SessionStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    LIVE = "LIVE"
    ENDED = "ENDED"


class LiveSession(Base):
    """A tutoring session: one tutor, several enrolled students, a time slot."""

    __tablename__ = "live_sessions"
    __table_args__ = (
        Index("ix_live_sessions_center_starts", "center_id", "starts_at"),
        Index("ix_live_sessions_center_tutor_starts", "center_id", "tutor_id", "starts_at"),
        Index("ix_live_sessions_course_session_id", "course_session_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    title: Mapped[str] = mapped_column(String(200))
    tutor_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.SCHEDULED.value)
    max_students: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # The course session this live session meets for, if any.
    course_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("course_sessions.id", ondelete="SET NULL")
    )
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Enrollment(Base):
    """One student in one session, on their own course, lesson and level."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("session_id", "student_id", name="uq_enrollments_session_student"),
        Index("ix_enrollments_center_student", "center_id", "student_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    student_name: Mapped[str | None] = mapped_column(String(200))
    course_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    lesson_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    level: Mapped[str | None] = mapped_column(String(64))
    exercise_content: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    assessment_data: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str | None] = mapped_column(Text)
    # Teach (the tutor is with this student now) or Observe (the student works alone).
    mode: Mapped[str] = mapped_column(String(16), default=Mode.OBSERVE.value)
    # The exercise the tutor assigned during the session, if any.
    assignment: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class TutorNote(Base):
    """A tutor's note on a session or one student, with who may read it."""

    __tablename__ = "tutor_notes"
    __table_args__ = (Index("ix_tutor_notes_session_student", "session_id", "student_id"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    author_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    text: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExerciseAttempt(Base):
    """A student's go at one exercise: from first progress (or assignment) to completion."""

    __tablename__ = "exercise_attempts"
    __table_args__ = (
        Index("ix_exercise_attempts_session_student", "session_id", "student_id", "exercise_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    exercise_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress_pct: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class HelpPriority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


class HelpStatus(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    CANCELLED = "CANCELLED"


HELP_ACTIVE = (HelpStatus.OPEN.value, HelpStatus.IN_PROGRESS.value)


class HelpRequest(Base):
    """A student's request for help; at most one active per student and exercise."""

    __tablename__ = "help_requests"
    __table_args__ = (
        Index("ix_help_requests_session_status", "session_id", "status"),
        Index(
            "uq_help_requests_one_active",
            "session_id",
            "student_id",
            "exercise_key",
            unique=True,
            sqlite_where=text("status IN ('OPEN', 'IN_PROGRESS')"),
            postgresql_where=text("status IN ('OPEN', 'IN_PROGRESS')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    # The exercise asked about, or "" for none (so the one-active index covers both).
    exercise_key: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    message: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=HelpStatus.OPEN.value)
    response: Mapped[str | None] = mapped_column(Text)
    handled_by: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AttendanceStatus(StrEnum):
    PRESENT = "PRESENT"
    LATE = "LATE"
    ABSENT = "ABSENT"
    EXCUSED = "EXCUSED"


class AttendanceRecord(Base):
    """A student's attendance of one session: derived from joins, or marked by staff."""

    __tablename__ = "attendance_records"
    __table_args__ = (
        UniqueConstraint("session_id", "student_id", name="uq_attendance_records_session_student"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    # Who marked it by hand (then joins no longer change it); None: derived.
    marked_by: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    notes: Mapped[str | None] = mapped_column(Text)
    first_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CatchUpPackage(Base):
    """Work for a student who missed a session: their lesson and exercise content."""

    __tablename__ = "catch_up_packages"
    __table_args__ = (
        UniqueConstraint("session_id", "student_id", name="uq_catch_up_packages_session_student"),
        Index("ix_catch_up_packages_center_student", "center_id", "student_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    course_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    lesson_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    level: Mapped[str | None] = mapped_column(String(64))
    exercise_content: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Timer(Base):
    """A tutor's countdown for the session or one student; fires once, even across restarts."""

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_session", "session_id"),
        Index("ix_timers_due", "fired_at", "ends_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    label: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Alert(Base):
    """An alert the hub raised; the unique key makes each fire once in its lifetime."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("session_id", "kind", "subject", name="uq_alerts_session_kind_subject"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    # What the alert is about: a timer, student episode or help request id ("" for the session).
    subject: Mapped[str] = mapped_column(String(200))
    student_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    label: Mapped[str] = mapped_column(String(200))
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EnrollmentEventKind(StrEnum):
    MODE = "MODE"
    ASSIGNMENT = "ASSIGNMENT"


class EnrollmentEvent(Base):
    """A change the tutor made to one student's enrollment during the session, with its
    time: the history behind ``Enrollment.mode`` and ``Enrollment.assignment``, which
    hold only the current value. Written in the same transaction as the change."""

    __tablename__ = "enrollment_events"
    __table_args__ = (Index("ix_enrollment_events_session_student", "session_id", "student_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))
    # MODE: {"mode": "TEACH"|"OBSERVE"}; ASSIGNMENT: {"exercise": {...}}.
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    actor_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class AttendanceInterval(Base):
    """One stretch of a student being connected to a session (``left_at`` open while live)."""

    __tablename__ = "attendance_intervals"
    __table_args__ = (Index("ix_attendance_intervals_session_student", "session_id", "student_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
