"""Cohorts: a class of students of one center, and its members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import EXTERNAL_ID_LENGTH, ID_LENGTH, Base, UTCDateTime, new_id, utcnow


class Cohort(Base):
    """A named class of students. Deleted softly (``deleted_at``): a deleted cohort is
    gone from every read, its rows stay, and its name is free again."""

    __tablename__ = "cohorts"
    __table_args__ = (
        Index(
            "ix_cohorts_center_name_live",
            "center_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_by: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH))


class CohortMember(Base):
    """A student in a cohort: the junction, keyed by (cohort, student), gone with its cohort."""

    __tablename__ = "cohort_members"
    __table_args__ = (
        Index("ix_cohort_members_cohort", "cohort_id"),
        Index("ix_cohort_members_center_student", "center_id", "student_id"),
    )

    cohort_id: Mapped[str] = mapped_column(
        ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH), primary_key=True)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    added_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
