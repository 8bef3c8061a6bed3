"""One canvas snapshot per (session, student, seq): duplicates removed, then unique.

Every hub holding a replica of a canvas could store the same timed snapshot; the
batch writer now inserts snapshots with ON CONFLICT DO NOTHING against this index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Keep the first row of each position (the documents are the same).
    op.execute(
        """
        DELETE FROM canvas_snapshots
        WHERE id NOT IN (
            SELECT MIN(id) FROM canvas_snapshots GROUP BY session_id, student_id, seq
        )
        """
    )
    op.drop_index("ix_canvas_snapshots_session_student_seq", table_name="canvas_snapshots")
    op.create_index(
        "uq_canvas_snapshots_stream_seq",
        "canvas_snapshots",
        ["session_id", "student_id", "seq"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_canvas_snapshots_stream_seq", table_name="canvas_snapshots")
    op.create_index(
        "ix_canvas_snapshots_session_student_seq",
        "canvas_snapshots",
        ["session_id", "student_id", "seq"],
    )
