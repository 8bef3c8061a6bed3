"""Control center, first part: Teach/Observe mode and assignment on the enrollment,
tutor notes, exercise attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["live_sessions.id"],
        name=f"fk_{table}_session_id_live_sessions",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("mode", sa.String(16), nullable=False, server_default="OBSERVE"))
        batch.add_column(sa.Column("assignment", DOCUMENT, nullable=True))
    with op.batch_alter_table("enrollments") as batch:
        # The default was only for existing rows; the model sets it from now on.
        batch.alter_column("mode", server_default=None)

    op.create_table(
        "tutor_notes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=True),
        sa.Column("author_id", sa.String(128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        _session_fk("tutor_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_tutor_notes"),
    )
    op.create_index("ix_tutor_notes_session_student", "tutor_notes", ["session_id", "student_id"])

    op.create_table(
        "exercise_attempts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("exercise_id", sa.String(128), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("progress_pct", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        _session_fk("exercise_attempts"),
        sa.PrimaryKeyConstraint("id", name="pk_exercise_attempts"),
    )
    op.create_index(
        "ix_exercise_attempts_session_student",
        "exercise_attempts",
        ["session_id", "student_id", "exercise_id"],
    )


def downgrade() -> None:
    op.drop_table("exercise_attempts")
    op.drop_table("tutor_notes")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("assignment")
        batch.drop_column("mode")
