"""Tutor-student relationships, tutor subjects, cohorts and their members.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LIVE = sa.text("deleted_at IS NULL")
ACTIVE = sa.text("active")


def upgrade() -> None:
    op.create_table(
        "tutor_students",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("tutor_id", sa.String(128), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("ended_by", sa.String(128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tutor_students"),
    )
    op.create_index(
        "ix_tutor_students_one_active",
        "tutor_students",
        ["center_id", "tutor_id", "student_id", "subject"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index(
        "ix_tutor_students_center_tutor", "tutor_students", ["center_id", "tutor_id", "active"]
    )
    op.create_index(
        "ix_tutor_students_center_student", "tutor_students", ["center_id", "student_id", "active"]
    )
    op.create_table(
        "tutor_subjects",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("tutor_id", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("level", sa.String(64), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tutor_subjects"),
        sa.UniqueConstraint("center_id", "tutor_id", "subject", name="uq_tutor_subjects_subject"),
    )
    op.create_table(
        "cohorts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.Column("deleted_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cohorts"),
    )
    op.create_index(
        "ix_cohorts_center_name_live",
        "cohorts",
        ["center_id", "name"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    op.create_table(
        "cohort_members",
        sa.Column("cohort_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"],
            ["cohorts.id"],
            name="fk_cohort_members_cohort_id_cohorts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cohort_id", "student_id", name="pk_cohort_members"),
    )
    op.create_index("ix_cohort_members_cohort", "cohort_members", ["cohort_id"])
    op.create_index(
        "ix_cohort_members_center_student", "cohort_members", ["center_id", "student_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_cohort_members_center_student", table_name="cohort_members")
    op.drop_index("ix_cohort_members_cohort", table_name="cohort_members")
    op.drop_table("cohort_members")
    op.drop_index("ix_cohorts_center_name_live", table_name="cohorts")
    op.drop_table("cohorts")
    op.drop_table("tutor_subjects")
    op.drop_index("ix_tutor_students_center_student", table_name="tutor_students")
    op.drop_index("ix_tutor_students_center_tutor", table_name="tutor_students")
    op.drop_index("ix_tutor_students_one_active", table_name="tutor_students")
    op.drop_table("tutor_students")
