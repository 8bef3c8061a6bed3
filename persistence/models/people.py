"""The center's directory of people, and which children a parent may follow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import EXTERNAL_ID_LENGTH, ID_LENGTH, Base, UTCDateTime, new_id, utcnow

EMAIL_LENGTH = 254


class PersonSource(StrEnum):
    TOKEN = "TOKEN"  # seen in a verified token
    IMPORT = "IMPORT"  # imported by a center admin; has not signed in yet


class Person(Base):
    """Someone of a center, known by their token's ``sub`` (``user_id``).

    Filled from verified tokens (role, name and email as the LMS last issued
    them) and by a center admin's import for people who have not signed in.
    """

    __tablename__ = "people"
    __table_args__ = (
        UniqueConstraint("center_id", "user_id", name="uq_people_center_user"),
        Index("ix_people_center_role_name", "center_id", "role", "name"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))
    source: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ParentLink(Base):
    """A parent who may follow one child of the center (set by a center admin)."""

    __tablename__ = "parent_links"
    __table_args__ = (
        UniqueConstraint("center_id", "parent_id", "student_id", name="uq_parent_links_child"),
        Index("ix_parent_links_center_student", "center_id", "student_id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    parent_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_by: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
