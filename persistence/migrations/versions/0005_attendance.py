"""Attendance records (derived or marked) and catch-up packages for absentees.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["live_sessions.id"],
        name=f"fk_{table}_session_id_live_sessions",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "attendance_records",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("marked_by", sa.String(128), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("first_joined_at", TIMESTAMP, nullable=True),
        sa.Column("last_left_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        _session_fk("attendance_records"),
        sa.PrimaryKeyConstraint("id", name="pk_attendance_records"),
        sa.UniqueConstraint(
            "session_id", "student_id", name="uq_attendance_records_session_student"
        ),
    )
    op.create_table(
        "catch_up_packages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("course_id", sa.String(128), nullable=True),
        sa.Column("lesson_id", sa.String(128), nullable=True),
        sa.Column("level", sa.String(64), nullable=True),
        sa.Column("exercise_content", DOCUMENT, nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        _session_fk("catch_up_packages"),
        sa.PrimaryKeyConstraint("id", name="pk_catch_up_packages"),
        sa.UniqueConstraint(
            "session_id", "student_id", name="uq_catch_up_packages_session_student"
        ),
    )
    op.create_index(
        "ix_catch_up_packages_center_student", "catch_up_packages", ["center_id", "student_id"]
    )


def downgrade() -> None:
    op.drop_table("catch_up_packages")
    op.drop_table("attendance_records")
