"""Course sessions: sessions, enrollments, announcements, settings; live sessions name theirs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOT_DELETED = sa.text("is_deleted = false")


def _audited() -> list[sa.Column[object]]:
    return [
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_ip", sa.String(45), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.Column("updated_ip", sa.String(45), nullable=True),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.Column("deleted_by", sa.String(128), nullable=True),
    ]


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["course_session_id"],
        ["course_sessions.id"],
        name=f"fk_{table}_session",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "course_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_name", sa.String(255), nullable=False),
        sa.Column("session_description", sa.Text(), nullable=True),
        sa.Column("teacher_id", sa.String(128), nullable=False),
        sa.Column("course_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_date", TIMESTAMP, nullable=False),
        sa.Column("end_date", TIMESTAMP, nullable=False),
        sa.Column("max_students", sa.Integer(), nullable=True),
        sa.Column("enrollment_deadline", TIMESTAMP, nullable=True),
        sa.Column("session_timezone", sa.String(64), nullable=True),
        sa.Column("session_code", sa.String(12), nullable=False),
        sa.Column("auto_expire_enabled", sa.Boolean(), nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=True),
        *_audited(),
        sa.PrimaryKeyConstraint("id", name="pk_course_sessions"),
        sa.UniqueConstraint("session_code", name="uq_course_sessions_session_code"),
    )
    op.create_index("ix_course_sessions_center_end", "course_sessions", ["center_id", "end_date"])
    op.create_index(
        "ix_course_sessions_center_start", "course_sessions", ["center_id", "start_date"]
    )
    op.create_index(
        "uq_course_sessions_teacher_course_name",
        "course_sessions",
        ["center_id", "teacher_id", "course_id", "session_name"],
        unique=True,
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
    )
    op.create_table(
        "course_session_announcements",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("course_session_id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("is_urgent", sa.Boolean(), nullable=False),
        sa.Column("scheduled_for", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("pushed_at", TIMESTAMP, nullable=True),
        *_audited(),
        _session_fk("course_session_announcements"),
        sa.PrimaryKeyConstraint("id", name="pk_course_session_announcements"),
    )
    op.create_index(
        "ix_course_session_announcements_center_pushed",
        "course_session_announcements",
        ["center_id", "pushed_at"],
    )
    op.create_index(
        "ix_course_session_announcements_session_created",
        "course_session_announcements",
        ["course_session_id", "created_at"],
    )
    op.create_index(
        "uq_course_session_announcements_title",
        "course_session_announcements",
        ["course_session_id", "title"],
        unique=True,
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
    )
    op.create_table(
        "course_session_enrollments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("course_session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("enrolled_at", TIMESTAMP, nullable=False),
        sa.Column("dropped_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("completion_percentage", sa.Integer(), nullable=False),
        sa.Column("final_grade", sa.Integer(), nullable=True),
        sa.Column("completion_date", TIMESTAMP, nullable=True),
        *_audited(),
        _session_fk("course_session_enrollments"),
        sa.PrimaryKeyConstraint("id", name="pk_course_session_enrollments"),
        sa.UniqueConstraint(
            "course_session_id", "student_id", name="uq_course_session_enrollments_student"
        ),
    )
    op.create_index(
        "ix_course_session_enrollments_center_student",
        "course_session_enrollments",
        ["center_id", "student_id"],
    )
    op.create_table(
        "course_session_settings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("course_session_id", sa.String(36), nullable=False),
        sa.Column("allow_late_enrollment", sa.Boolean(), nullable=False),
        sa.Column("require_approval_for_enrollment", sa.Boolean(), nullable=False),
        sa.Column("allow_student_discussions", sa.Boolean(), nullable=False),
        sa.Column("allow_student_drop", sa.Boolean(), nullable=False),
        sa.Column("send_reminder_emails", sa.Boolean(), nullable=False),
        sa.Column("reminder_days_before_expiry", sa.Integer(), nullable=False),
        sa.Column("grading_scale", DOCUMENT, nullable=True),
        sa.Column("attendance_tracking_enabled", sa.Boolean(), nullable=False),
        *_audited(),
        _session_fk("course_session_settings"),
        sa.PrimaryKeyConstraint("id", name="pk_course_session_settings"),
        sa.UniqueConstraint("course_session_id", name="uq_course_session_settings_session"),
    )
    with op.batch_alter_table("live_sessions") as batch:
        batch.add_column(sa.Column("course_session_id", sa.String(36), nullable=True))
        batch.create_index("ix_live_sessions_course_session_id", ["course_session_id"])
        batch.create_foreign_key(
            "fk_live_sessions_course_session_id_course_sessions",
            "course_sessions",
            ["course_session_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("live_sessions") as batch:
        batch.drop_constraint(
            "fk_live_sessions_course_session_id_course_sessions", type_="foreignkey"
        )
        batch.drop_index("ix_live_sessions_course_session_id")
        batch.drop_column("course_session_id")
    op.drop_table("course_session_settings")
    op.drop_index(
        "ix_course_session_enrollments_center_student", table_name="course_session_enrollments"
    )
    op.drop_table("course_session_enrollments")
    for name in (
        "uq_course_session_announcements_title",
        "ix_course_session_announcements_session_created",
        "ix_course_session_announcements_center_pushed",
    ):
        op.drop_index(name, table_name="course_session_announcements")
    op.drop_table("course_session_announcements")
    for name in (
        "uq_course_sessions_teacher_course_name",
        "ix_course_sessions_center_start",
        "ix_course_sessions_center_end",
    ):
        op.drop_index(name, table_name="course_sessions")
    op.drop_table("course_sessions")
