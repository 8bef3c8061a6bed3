"""Pages of rows: what a list asks for, and one page of a query with its total."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


async def page_of(
    db: AsyncSession,
    model: type[T],
    conditions: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    page: Page,
) -> tuple[Sequence[T], int]:
    """One page of ``model`` rows matching ``conditions``, and how many match in all."""
    total = await db.scalar(select(func.count()).select_from(model).where(*conditions))
    rows = await db.scalars(
        select(model).where(*conditions).order_by(*order_by).offset(page.offset).limit(page.size)
    )
    return rows.all(), int(total or 0)
