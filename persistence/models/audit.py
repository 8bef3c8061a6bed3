"""The audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.models.base import (
    EXTERNAL_ID_LENGTH,
    Base,
    JSONDocument,
    UTCDateTime,
    utcnow,
)


class AuditEntry(Base):
    """Who changed what, from where, when. Written in the same transaction as the change."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_center_at", "center_id", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    center_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    actor_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
