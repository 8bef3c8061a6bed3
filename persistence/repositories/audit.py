"""The audit log: who changed what, where from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    AuditEntry,
)


class AuditLog:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    def record(
        self,
        *,
        center_id: str,
        actor_id: str,
        actor_role: str,
        action: str,
        target_type: str,
        target_id: str,
        ip: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._db.add(
            AuditEntry(
                center_id=center_id,
                actor_id=actor_id,
                actor_role=actor_role,
                action=action,
                target_type=target_type,
                target_id=target_id,
                ip=ip,
                details=details,
            )
        )

    async def for_target(self, target_type: str, target_id: str) -> Sequence[AuditEntry]:
        rows = await self._db.scalars(
            select(AuditEntry)
            .where(AuditEntry.target_type == target_type, AuditEntry.target_id == target_id)
            .order_by(AuditEntry.id)
        )
        return rows.all()
