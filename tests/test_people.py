"""The directory of people: what tokens and a center admin's import record, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.db import session_factory
from persistence.models import PersonSource
from persistence.repositories import Imported, Page, ParentLinks, PeopleRepository, Seen

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def test_a_token_seen_again_updates_the_person_but_keeps_first_seen(
    engine: AsyncEngine,
) -> None:
    db = session_factory(engine)
    async with db.begin() as s:
        await PeopleRepository(s).seen([Seen("c1", "u1", "TUTOR", "Ana", "ana@x.org")], T0)
    later = T0 + timedelta(hours=1)
    async with db.begin() as s:
        # A token without name or email keeps what is known; the role follows the token.
        await PeopleRepository(s).seen([Seen("c1", "u1", "CENTER_ADMIN", None, None)], later)
    async with db() as s:
        person = await PeopleRepository(s).get("c1", "u1")
    assert person is not None
    assert (person.role, person.name, person.email) == ("CENTER_ADMIN", "Ana", "ana@x.org")
    assert (person.first_seen_at, person.last_seen_at) == (T0, later)
    assert person.source == PersonSource.TOKEN.value


async def test_centers_keep_their_own_people(engine: AsyncEngine) -> None:
    db = session_factory(engine)
    async with db.begin() as s:
        await PeopleRepository(s).seen(
            [Seen("c1", "u1", "STUDENT", "Bo", None), Seen("c2", "u1", "TUTOR", "Other", None)],
            T0,
        )
    async with db() as s:
        people = PeopleRepository(s)
        assert set(await people.by_ids("c1", ["u1", "u2"])) == {"u1"}
        rows, total = await people.page("c1", Page(1, 10))
        assert total == 1 and rows[0].name == "Bo"
        rows, total = await people.page("c2", Page(1, 10), role="STUDENT")
        assert total == 0


async def test_an_import_adds_people_and_never_overwrites_what_a_token_said(
    engine: AsyncEngine,
) -> None:
    db = session_factory(engine)
    async with db.begin() as s:
        await PeopleRepository(s).seen([Seen("c1", "signed-in", "STUDENT", "Cy", None)], T0)
    async with db.begin() as s:
        created, updated = await PeopleRepository(s).imported(
            "c1",
            [
                Imported("signed-in", "TUTOR", "Wrong", "cy@x.org"),
                Imported("new", "STUDENT", "Di", "di@x.org"),
            ],
        )
    assert (created, updated) == (1, 1)
    async with db() as s:
        people = await PeopleRepository(s).by_ids("c1", ["signed-in", "new"])
        rows, total = await PeopleRepository(s).page("c1", Page(1, 10), search="DI@")
    assert (people["signed-in"].role, people["signed-in"].name) == ("STUDENT", "Cy")
    assert people["signed-in"].email == "cy@x.org"  # the token had none
    assert people["new"].source == PersonSource.IMPORT.value
    assert people["new"].first_seen_at is None
    assert total == 1 and rows[0].user_id == "new"


async def test_a_parent_follows_only_linked_children(engine: AsyncEngine) -> None:
    db = session_factory(engine)
    async with db.begin() as s:
        links = ParentLinks(s)
        links.link("c1", "p1", "s1", by="admin")
        links.link("c1", "p1", "s2", by="admin")
        links.link("c2", "p1", "s3", by="admin")
    async with db.begin() as s:
        links = ParentLinks(s)
        assert await links.children("c1", "p1") == ["s1", "s2"]
        assert await links.is_parent("c1", "p1", "s2")
        assert not await links.is_parent("c1", "p1", "s3")
        assert await links.unlink("c1", "p1", "s2")
        assert not await links.unlink("c1", "p1", "s2")
        assert await links.children("c1", "p1") == ["s1"]
