"""The directory of people of each center, and parents' links to their children."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import ParentLink, Person, PersonSource, new_id, utcnow
from persistence.repositories.paging import Page, page_of


@dataclass(frozen=True, slots=True)
class Seen:
    """Who a verified token says someone is."""

    center_id: str
    user_id: str
    role: str
    name: str | None
    email: str | None


@dataclass(frozen=True, slots=True)
class Imported:
    """A person a center admin lists before they have signed in."""

    user_id: str
    role: str
    name: str | None
    email: str | None


class PeopleRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, center_id: str, user_id: str) -> Person | None:
        return await self._db.scalar(
            select(Person).where(Person.center_id == center_id, Person.user_id == user_id)
        )

    async def by_ids(self, center_id: str, user_ids: Sequence[str]) -> dict[str, Person]:
        """The people of ``user_ids`` the directory knows, by user id."""
        if not user_ids:
            return {}
        rows = await self._db.scalars(
            select(Person).where(Person.center_id == center_id, Person.user_id.in_(user_ids))
        )
        return {p.user_id: p for p in rows}

    async def page(
        self, center_id: str, page: Page, *, role: str | None = None, search: str | None = None
    ) -> tuple[Sequence[Person], int]:
        conditions: list[ColumnElement[bool]] = [Person.center_id == center_id]
        if role is not None:
            conditions.append(Person.role == role)
        if search:
            pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%") + "%"
            conditions.append(
                or_(
                    func.lower(Person.name).like(pattern, escape="\\"),
                    func.lower(Person.email).like(pattern, escape="\\"),
                    func.lower(Person.user_id).like(pattern, escape="\\"),
                )
            )
        return await page_of(self._db, Person, conditions, [Person.name, Person.user_id], page)

    async def seen(self, people: Sequence[Seen], at: datetime) -> None:
        """Record people as their tokens describe them: role, and name and email when the
        token has them (an absent claim keeps what is known). One statement."""
        if not people:
            return
        dialect = postgresql if self._db.get_bind().dialect.name == "postgresql" else sqlite
        insert = dialect.insert(Person)
        rows = [
            {
                "id": new_id(),
                "center_id": p.center_id,
                "user_id": p.user_id,
                "role": p.role,
                "name": p.name,
                "email": p.email,
                "source": PersonSource.TOKEN.value,
                "first_seen_at": at,
                "last_seen_at": at,
                "created_at": at,
                "updated_at": at,
            }
            for p in people
        ]
        excluded = insert.excluded
        await self._db.execute(
            insert.on_conflict_do_update(
                index_elements=["center_id", "user_id"],
                set_={
                    "role": excluded.role,
                    "name": func.coalesce(excluded.name, Person.name),
                    "email": func.coalesce(excluded.email, Person.email),
                    "source": PersonSource.TOKEN.value,
                    "first_seen_at": func.coalesce(Person.first_seen_at, excluded.first_seen_at),
                    "last_seen_at": excluded.last_seen_at,
                    "updated_at": excluded.updated_at,
                },
            ),
            rows,
        )

    async def imported(self, center_id: str, people: Sequence[Imported]) -> tuple[int, int]:
        """Add or update people a center admin lists; (created, updated). Someone who
        has signed in keeps what their token said, but for fields the token lacked."""
        known = await self.by_ids(center_id, [p.user_id for p in people])
        now = utcnow()
        for p in people:
            person = known.get(p.user_id)
            if person is None:
                self._db.add(
                    Person(
                        center_id=center_id,
                        user_id=p.user_id,
                        role=p.role,
                        name=p.name,
                        email=p.email,
                        source=PersonSource.IMPORT.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
            elif person.source == PersonSource.IMPORT.value:
                person.role, person.name, person.email = p.role, p.name, p.email
            else:
                person.name = person.name or p.name
                person.email = person.email or p.email
        await self._db.flush()
        return len(people) - len(known), len(known)


class ParentLinks:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def children(self, center_id: str, parent_id: str) -> list[str]:
        rows = await self._db.scalars(
            select(ParentLink.student_id)
            .where(ParentLink.center_id == center_id, ParentLink.parent_id == parent_id)
            .order_by(ParentLink.student_id)
        )
        return list(rows)

    async def is_parent(self, center_id: str, parent_id: str, student_id: str) -> bool:
        found = await self._db.scalar(
            select(ParentLink.id).where(
                ParentLink.center_id == center_id,
                ParentLink.parent_id == parent_id,
                ParentLink.student_id == student_id,
            )
        )
        return found is not None

    def link(self, center_id: str, parent_id: str, student_id: str, by: str) -> ParentLink:
        link = ParentLink(
            center_id=center_id, parent_id=parent_id, student_id=student_id, created_by=by
        )
        self._db.add(link)
        return link

    async def unlink(self, center_id: str, parent_id: str, student_id: str) -> bool:
        result = await self._db.execute(
            delete(ParentLink).where(
                ParentLink.center_id == center_id,
                ParentLink.parent_id == parent_id,
                ParentLink.student_id == student_id,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
