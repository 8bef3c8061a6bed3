"""Tutor timers and the hub's alerts (each alert fires once: unique per subject).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["live_sessions.id"],
        name=f"fk_{table}_session_id_live_sessions",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("starts_at", TIMESTAMP, nullable=False),
        sa.Column("ends_at", TIMESTAMP, nullable=False),
        sa.Column("warn_at", TIMESTAMP, nullable=True),
        sa.Column("warned_at", TIMESTAMP, nullable=True),
        sa.Column("fired_at", TIMESTAMP, nullable=True),
        sa.Column("cancelled_at", TIMESTAMP, nullable=True),
        _session_fk("timers"),
        sa.PrimaryKeyConstraint("id", name="pk_timers"),
    )
    op.create_index("ix_timers_session", "timers", ["session_id"])
    op.create_index("ix_timers_due", "timers", ["fired_at", "ends_at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("center_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("fired_at", TIMESTAMP, nullable=False),
        _session_fk("alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("session_id", "kind", "subject", name="uq_alerts_session_kind_subject"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("timers")
