"""The history of a student's mode (Teach/Observe) and assignments in a session.

``enrollments.mode`` and ``enrollments.assignment`` hold only the current value; the
replay timeline needs each change with its time. Changes made before this revision
were not recorded (the audit log names the student but not the session).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "enrollment_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", DOCUMENT, nullable=False),
        sa.Column("actor_id", sa.String(128), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["live_sessions.id"],
            name="fk_enrollment_events_session_id_live_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_events"),
    )
    op.create_index(
        "ix_enrollment_events_session_student",
        "enrollment_events",
        ["session_id", "student_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_enrollment_events_session_student", table_name="enrollment_events")
    op.drop_table("enrollment_events")
