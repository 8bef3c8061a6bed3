"""Course sessions: a teacher's course over weeks, the students enrolled by code,
announcements, settings, and the cohorts it is offered to. Rows are soft-deleted
(``is_deleted``), never removed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
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

SESSION_CODE_LENGTH = 12
IP_LENGTH = 45


class CourseSessionStatus(StrEnum):
    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"
    EXPIRED = "EXPIRED"


class SessionEnrollmentStatus(StrEnum):
    PENDING = "PENDING"
    ENROLLED = "ENROLLED"
    DROPPED = "DROPPED"
    COMPLETED = "COMPLETED"
    EXPELLED = "EXPELLED"


# The statuses that hold a seat (count towards max_students).
SEATED = (
    SessionEnrollmentStatus.PENDING.value,
    SessionEnrollmentStatus.ENROLLED.value,
    SessionEnrollmentStatus.COMPLETED.value,
)

NOT_DELETED = text("is_deleted = false")


class _Audited:
    """Who made, changed and deleted a row, when and from where."""

    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_ip: Mapped[str | None] = mapped_column(String(IP_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    updated_ip: Mapped[str | None] = mapped_column(String(IP_LENGTH))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_by: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))


class CourseSession(_Audited, Base):
    """One teacher, one course, many students, between two dates."""

    __tablename__ = "course_sessions"
    __table_args__ = (
        UniqueConstraint("session_code", name="uq_course_sessions_session_code"),
        # A session name is unique per teacher and course among the undeleted.
        Index(
            "uq_course_sessions_teacher_course_name",
            "center_id",
            "teacher_id",
            "course_id",
            "session_name",
            unique=True,
            sqlite_where=NOT_DELETED,
            postgresql_where=NOT_DELETED,
        ),
        Index("ix_course_sessions_center_start", "center_id", "start_date"),
        Index("ix_course_sessions_center_end", "center_id", "end_date"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_name: Mapped[str] = mapped_column(String(255))
    session_description: Mapped[str | None] = mapped_column(Text)
    teacher_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    course_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    # As stored: DRAFT or PUBLISHED (EXPIRED is read from end_date, see effective_status).
    status: Mapped[str] = mapped_column(String(16), default=CourseSessionStatus.DRAFT.value)
    start_date: Mapped[datetime] = mapped_column(UTCDateTime())
    end_date: Mapped[datetime] = mapped_column(UTCDateTime())
    max_students: Mapped[int | None] = mapped_column(Integer)
    enrollment_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    session_timezone: Mapped[str | None] = mapped_column(String(64))
    session_code: Mapped[str] = mapped_column(String(SESSION_CODE_LENGTH))
    auto_expire_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def effective_status(self, now: datetime) -> str:
        """EXPIRED as soon as end_date has passed (with auto_expire_enabled), else as stored."""
        if self.status == CourseSessionStatus.EXPIRED.value:
            return self.status
        if self.auto_expire_enabled and self.end_date <= now:
            return CourseSessionStatus.EXPIRED.value
        return self.status


class CourseSessionEnrollment(_Audited, Base):
    """A student in a course session."""

    __tablename__ = "course_session_enrollments"
    __table_args__ = (
        UniqueConstraint(
            "course_session_id", "student_id", name="uq_course_session_enrollments_student"
        ),
        Index("ix_course_session_enrollments_center_student", "center_id", "student_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    course_session_id: Mapped[str] = mapped_column(
        ForeignKey("course_sessions.id", ondelete="CASCADE", name=f"fk_{__tablename__}_session")
    )
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dropped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    completion_percentage: Mapped[int] = mapped_column(Integer, default=0)
    final_grade: Mapped[int | None] = mapped_column(Integer)
    completion_date: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CourseSessionAnnouncement(_Audited, Base):
    """A teacher's announcement, shown to students between scheduled_for and expires_at."""

    __tablename__ = "course_session_announcements"
    __table_args__ = (
        Index(
            "uq_course_session_announcements_title",
            "course_session_id",
            "title",
            unique=True,
            sqlite_where=NOT_DELETED,
            postgresql_where=NOT_DELETED,
        ),
        Index("ix_course_session_announcements_session_created", "course_session_id", "created_at"),
        Index("ix_course_session_announcements_center_pushed", "center_id", "pushed_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    course_session_id: Mapped[str] = mapped_column(
        ForeignKey("course_sessions.id", ondelete="CASCADE", name=f"fk_{__tablename__}_session")
    )
    title: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    is_urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When it was pushed live to the connected students (once; claimed by the pusher).
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CourseSessionSettings(_Audited, Base):
    """A course session's policies (one row per session, made with it)."""

    __tablename__ = "course_session_settings"
    __table_args__ = (
        UniqueConstraint("course_session_id", name="uq_course_session_settings_session"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    course_session_id: Mapped[str] = mapped_column(
        ForeignKey("course_sessions.id", ondelete="CASCADE", name=f"fk_{__tablename__}_session")
    )
    allow_late_enrollment: Mapped[bool] = mapped_column(Boolean, default=False)
    require_approval_for_enrollment: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_student_discussions: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_student_drop: Mapped[bool] = mapped_column(Boolean, default=True)
    send_reminder_emails: Mapped[bool] = mapped_column(Boolean, default=True)
    reminder_days_before_expiry: Mapped[int] = mapped_column(Integer, default=7)
    grading_scale: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    attendance_tracking_enabled: Mapped[bool] = mapped_column(Boolean, default=False)


class CourseSessionCohort(Base):
    """A cohort a course session is offered to: the junction, keyed by (session, cohort),
    gone with either row. A soft-deleted cohort's rows stay (history) but offer nothing."""

    __tablename__ = "course_session_cohorts"
    __table_args__ = (Index("ix_course_session_cohorts_cohort", "cohort_id"),)

    course_session_id: Mapped[str] = mapped_column(
        ForeignKey("course_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True
    )
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    added_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
