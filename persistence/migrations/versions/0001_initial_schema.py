"""Initial schema: sessions, enrollments, attendance intervals, canvas snapshots, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types, so later model changes cannot rewrite history.
ID = sa.String(36)
EXTERNAL_ID = sa.String(128)
TIMESTAMP = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["live_sessions.id"],
        name=f"fk_{table}_session_id_live_sessions",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("center_id", EXTERNAL_ID, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("tutor_id", EXTERNAL_ID, nullable=False),
        sa.Column("starts_at", TIMESTAMP, nullable=False),
        sa.Column("ends_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("max_students", sa.Integer(), nullable=False),
        sa.Column("settings", DOCUMENT, nullable=False),
        sa.Column("created_by", EXTERNAL_ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_live_sessions"),
    )
    op.create_index("ix_live_sessions_center_starts", "live_sessions", ["center_id", "starts_at"])
    op.create_index(
        "ix_live_sessions_center_tutor_starts",
        "live_sessions",
        ["center_id", "tutor_id", "starts_at"],
    )

    op.create_table(
        "enrollments",
        sa.Column("id", ID, nullable=False),
        sa.Column("center_id", EXTERNAL_ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("student_id", EXTERNAL_ID, nullable=False),
        sa.Column("student_name", sa.String(200), nullable=True),
        sa.Column("course_id", EXTERNAL_ID, nullable=True),
        sa.Column("lesson_id", EXTERNAL_ID, nullable=True),
        sa.Column("level", sa.String(64), nullable=True),
        sa.Column("exercise_content", DOCUMENT, nullable=True),
        sa.Column("assessment_data", DOCUMENT, nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        _session_fk("enrollments"),
        sa.PrimaryKeyConstraint("id", name="pk_enrollments"),
        sa.UniqueConstraint("session_id", "student_id", name="uq_enrollments_session_student"),
    )
    op.create_index("ix_enrollments_center_student", "enrollments", ["center_id", "student_id"])

    op.create_table(
        "attendance_intervals",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("center_id", EXTERNAL_ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("student_id", EXTERNAL_ID, nullable=False),
        sa.Column("joined_at", TIMESTAMP, nullable=False),
        sa.Column("left_at", TIMESTAMP, nullable=True),
        _session_fk("attendance_intervals"),
        sa.PrimaryKeyConstraint("id", name="pk_attendance_intervals"),
    )
    op.create_index(
        "ix_attendance_intervals_session_student",
        "attendance_intervals",
        ["session_id", "student_id"],
    )

    op.create_table(
        "canvas_snapshots",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("center_id", EXTERNAL_ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("student_id", EXTERNAL_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.String(64), nullable=False),
        sa.Column("doc", DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        _session_fk("canvas_snapshots"),
        sa.PrimaryKeyConstraint("id", name="pk_canvas_snapshots"),
    )
    op.create_index(
        "ix_canvas_snapshots_session_student_seq",
        "canvas_snapshots",
        ["session_id", "student_id", "seq"],
    )

    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("center_id", EXTERNAL_ID, nullable=False),
        sa.Column("actor_id", EXTERNAL_ID, nullable=False),
        sa.Column("actor_role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", EXTERNAL_ID, nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("details", DOCUMENT, nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_center_at", "audit_log", ["center_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("canvas_snapshots")
    op.drop_table("attendance_intervals")
    op.drop_table("enrollments")
    op.drop_table("live_sessions")
