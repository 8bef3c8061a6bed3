"""The cohorts a course session is offered to (course session <-> cohort junction).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "course_session_cohorts",
        sa.Column("course_session_id", sa.String(36), nullable=False),
        sa.Column("cohort_id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["course_session_id"],
            ["course_sessions.id"],
            name="fk_course_session_cohorts_course_session_id_course_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["cohort_id"],
            ["cohorts.id"],
            name="fk_course_session_cohorts_cohort_id_cohorts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("course_session_id", "cohort_id", name="pk_course_session_cohorts"),
    )
    # The primary key leads with course_session_id; this serves "which sessions a cohort is in".
    op.create_index("ix_course_session_cohorts_cohort", "course_session_cohorts", ["cohort_id"])


def downgrade() -> None:
    op.drop_index("ix_course_session_cohorts_cohort", table_name="course_session_cohorts")
    op.drop_table("course_session_cohorts")
