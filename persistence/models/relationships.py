"""Tutor-student relationships (many-to-many, with history) and what each tutor teaches."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import EXTERNAL_ID_LENGTH, ID_LENGTH, Base, UTCDateTime, new_id, utcnow

SUBJECT_LENGTH = 100


class TutorStudent(Base):
    """A tutor who teaches a student a subject, from ``start_date`` (to ``end_date``).

    Never deleted: ending one sets ``active`` false and ``end_date``, so the
    history of who taught whom stays. At most one active relationship per
    tutor, student and subject (a partial unique index); ended ones are many.
    Sessions are not tied to it by a key: the sessions of a relationship are
    the tutor's sessions the student was enrolled in while it ran, and ending
    it touches none of them.
    """

    __tablename__ = "tutor_students"
    __table_args__ = (
        Index(
            "ix_tutor_students_one_active",
            "center_id",
            "tutor_id",
            "student_id",
            "subject",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index("ix_tutor_students_center_tutor", "center_id", "tutor_id", "active"),
        Index("ix_tutor_students_center_student", "center_id", "student_id", "active"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    tutor_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    ended_by: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class TutorSubject(Base):
    """A subject a tutor teaches, with their level in it (free text: "A-level", "Grade 8")."""

    __tablename__ = "tutor_subjects"
    __table_args__ = (
        UniqueConstraint("center_id", "tutor_id", "subject", name="uq_tutor_subjects_subject"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    tutor_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    level: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
