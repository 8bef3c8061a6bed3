"""Many-to-many junctions set from a list of ids: all or nothing, and only the difference.

``sync_links`` is the one piece every "create with ids" and "PATCH with the
whole list" uses (cohort members today; the course-session/cohort junction
and a tutor's subjects reuse it). In the caller's transaction it

1. reads the ids the owner links now,
2. checks that every wanted id exists (``existing``, e.g. the students of the
   center) and raises ``UnknownIds`` naming the bad ones before it writes
   anything,
3. deletes the links of the ids no longer wanted (one statement), then
4. inserts the links of the ids newly wanted (one flush).

Links that stay are not touched (their rows keep their keys and
``created_at``). Nothing commits here: a failure anywhere later in the
caller's transaction rolls back every row written, the owner's included.
The caller serializes concurrent changes of one owner (lock the owner's row).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from persistence.repositories.people import PeopleRepository

# Which of these ids exist (in the owner's center): a subset of its argument.
Existing = Callable[[Sequence[str]], Awaitable[Collection[str]]]


class UnknownIds(Exception):
    """Some wanted ids do not exist; nothing was written."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(f"unknown ids: {', '.join(ids)}")
        self.ids = tuple(ids)


@dataclass(frozen=True, slots=True)
class LinkChange:
    """What a sync did, each in the order the ids were wanted (``removed``: sorted)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def unique_in_order(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


async def sync_links(
    db: AsyncSession,
    item: InstrumentedAttribute[str],
    owner: Sequence[ColumnElement[bool]],
    wanted: Iterable[str],
    *,
    existing: Existing,
    make: Callable[[str], Any],
) -> LinkChange:
    """Make the owner's links exactly ``wanted``, touching only the difference.

    ``item`` is the junction's column of the linked id (``CohortMember.student_id``);
    ``owner`` the conditions that select the owner's rows
    (``[CohortMember.cohort_id == cohort.id]``); ``make(id)`` builds a new row.
    Raises ``UnknownIds`` (nothing written) when ``existing`` does not know a wanted id.
    """
    model = item.class_
    wanted_ids = unique_in_order(wanted)
    current = set(await db.scalars(select(item).where(*owner)))
    if wanted_ids:
        found = set(await existing(wanted_ids))
        unknown = [i for i in wanted_ids if i not in found]
        if unknown:
            raise UnknownIds(unknown)
    wanted_set = set(wanted_ids)
    added = tuple(i for i in wanted_ids if i not in current)
    removed = tuple(sorted(current - wanted_set))
    kept = tuple(i for i in wanted_ids if i in current)
    if removed:
        await db.execute(
            delete(model)
            .where(*owner, item.in_(removed))
            .execution_options(synchronize_session=False)
        )
    if added:
        db.add_all([make(i) for i in added])
        await db.flush()
    return LinkChange(added=added, removed=removed, kept=kept)


def people_in_role(db: AsyncSession, center_id: str, role: str) -> Existing:
    """``existing`` for ids of the center's directory with ``role`` (its students, tutors)."""

    async def existing(ids: Sequence[str]) -> Collection[str]:
        found = await PeopleRepository(db).by_ids(center_id, ids)
        return {user_id for user_id, person in found.items() if person.role == role}

    return existing
