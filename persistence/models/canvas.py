"""Canvas storage: snapshots and the op log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import (
    EXTERNAL_ID_LENGTH,
    Base,
    JSONDocument,
    UTCDateTime,
    utcnow,
)


class CanvasSnapshot(Base):
    """A student's canvas document as of ``seq`` (compaction point of the op log)."""

    __tablename__ = "canvas_snapshots"
    __table_args__ = (
        # One snapshot per position: every hub holding a replica of the canvas may write
        # the same timed snapshot, and the batch writer keeps the first (``keep_first``).
        Index("uq_canvas_snapshots_stream_seq", "session_id", "student_id", "seq", unique=True),
        {"info": {"keep_first": True}},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    seq: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[str] = mapped_column(String(64))
    doc: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CanvasOp(Base):
    """One accepted canvas patch: the durable op log, written before the patch is acked."""

    __tablename__ = "canvas_ops"
    __table_args__ = (
        UniqueConstraint("session_id", "student_id", "seq", name="uq_canvas_ops_stream_seq"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id", ondelete="CASCADE"))
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    seq: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    ops: Mapped[list[Any]] = mapped_column(JSONDocument)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
