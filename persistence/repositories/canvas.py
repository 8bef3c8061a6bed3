"""Canvas op log and snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import (
    CanvasOp,
    CanvasSnapshot,
)
from persistence.repositories.paging import Page, page_of


@dataclass(frozen=True, slots=True)
class StoredCanvas:
    """What the database holds for one canvas: its latest snapshot and the ops after it."""

    snapshot_seq: int
    snapshot_doc: dict[str, Any] | None
    epoch: str | None
    ops: Sequence[CanvasOp]


class CanvasRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def load(
        self, session_id: str, student_id: str, *, upto: int | None = None
    ) -> StoredCanvas:
        """The latest snapshot at or before ``upto`` (default: any) and the ops after it."""
        snap_query = select(CanvasSnapshot).where(
            CanvasSnapshot.session_id == session_id, CanvasSnapshot.student_id == student_id
        )
        if upto is not None:
            snap_query = snap_query.where(CanvasSnapshot.seq <= upto)
        snapshot = (
            await self._db.scalars(
                snap_query.order_by(CanvasSnapshot.seq.desc(), CanvasSnapshot.id.desc()).limit(1)
            )
        ).first()
        after = snapshot.seq if snapshot is not None else 0
        ops_query = select(CanvasOp).where(
            CanvasOp.session_id == session_id,
            CanvasOp.student_id == student_id,
            CanvasOp.seq > after,
        )
        if upto is not None:
            ops_query = ops_query.where(CanvasOp.seq <= upto)
        ops = (await self._db.scalars(ops_query.order_by(CanvasOp.seq))).all()
        epoch = ops[-1].epoch if ops else snapshot.epoch if snapshot is not None else None
        return StoredCanvas(
            snapshot_seq=after,
            snapshot_doc=snapshot.doc if snapshot is not None else None,
            epoch=epoch,
            ops=ops,
        )

    async def recent_ops(self, session_id: str, student_id: str, limit: int) -> Sequence[CanvasOp]:
        """The last ``limit`` ops of a canvas, oldest first."""
        rows = (
            await self._db.scalars(
                select(CanvasOp)
                .where(CanvasOp.session_id == session_id, CanvasOp.student_id == student_id)
                .order_by(CanvasOp.seq.desc())
                .limit(limit)
            )
        ).all()
        return rows[::-1]

    async def ops_between(
        self, session_id: str, student_id: str, first: int, last: int
    ) -> Sequence[CanvasOp]:
        """The ops of a canvas from seq ``first`` to ``last``, in seq order."""
        query = select(CanvasOp).where(
            CanvasOp.session_id == session_id,
            CanvasOp.student_id == student_id,
            CanvasOp.seq.between(first, last),
        )
        return (await self._db.scalars(query.order_by(CanvasOp.seq))).all()

    async def add_ops_keeping_stored(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``canvas_ops`` rows; a row already stored at the same seq of the same
        canvas is kept (the insert skips it, on Postgres and SQLite alike)."""
        bind = self._db.get_bind()
        dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(CanvasOp).on_conflict_do_nothing(
            index_elements=["session_id", "student_id", "seq"]
        )
        await self._db.execute(insert, list(rows))

    async def snapshots(
        self, session_id: str, student_id: str, page: Page
    ) -> tuple[Sequence[CanvasSnapshot], int]:
        return await page_of(
            self._db,
            CanvasSnapshot,
            (CanvasSnapshot.session_id == session_id, CanvasSnapshot.student_id == student_id),
            (CanvasSnapshot.seq.desc(), CanvasSnapshot.id.desc()),
            page,
        )
