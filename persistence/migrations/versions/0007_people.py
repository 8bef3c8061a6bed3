"""The center's directory of people, and parents' links to their children.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=True),
        sa.Column("last_seen_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_people"),
        sa.UniqueConstraint("center_id", "user_id", name="uq_people_center_user"),
    )
    op.create_index("ix_people_center_role_name", "people", ["center_id", "role", "name"])
    op.create_table(
        "parent_links",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("parent_id", sa.String(128), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_parent_links"),
        sa.UniqueConstraint("center_id", "parent_id", "student_id", name="uq_parent_links_child"),
    )
    op.create_index("ix_parent_links_center_student", "parent_links", ["center_id", "student_id"])


def downgrade() -> None:
    op.drop_index("ix_parent_links_center_student", table_name="parent_links")
    op.drop_table("parent_links")
    op.drop_index("ix_people_center_role_name", table_name="people")
    op.drop_table("people")
