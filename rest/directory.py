"""The center's directory of people over REST, and how it fills from verified tokens.

Everyone a verified token names is recorded (``Directory.record``) before their
request or connection is served, the first time this process sees them and
again when their role, name or email changes or ``REFRESH_S`` has passed; so a
tutor who just signed in can be named as a course session's teacher at once. A
center admin imports the people who have not signed in yet. Parents are linked
to their children here.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typing_extensions import TypedDict

from persistence.models import EMAIL_LENGTH, Person, utcnow
from persistence.repositories import (
    Imported,
    Page,
    ParentLinks,
    PeopleRepository,
    Seen,
)
from persistence.views import IsoTime, iso
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.identity import Identity, Role
from realtime.base.logbudget import LogBudget
from rest.http import identity, listing, ok, parse_body, parse_query, record_change
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import Body, Id, PageQuery

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# Someone seen again is recorded again after this long (their last_seen_at moves on).
REFRESH_S = 600.0
# People remembered as recorded, per process (the least recently seen are forgotten).
REMEMBERED = 100_000
MAX_IMPORT = 1_000

DIRECTORY_READERS = frozenset(
    {Role.SUPER_ADMIN, Role.CENTER_ADMIN, Role.SUPERVISOR, Role.TUTOR, Role.ASSESSOR}
)
DIRECTORY_WRITERS = frozenset({Role.SUPER_ADMIN, Role.CENTER_ADMIN})

Email = Annotated[str, StringConstraints(min_length=3, max_length=EMAIL_LENGTH, pattern=r"@")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class Directory:
    """Records the people verified tokens name, once per change or ``REFRESH_S``."""

    def __init__(self, db: async_sessionmaker[AsyncSession], refresh_s: float = REFRESH_S) -> None:
        self._db = db
        self._refresh_s = refresh_s
        # (center, user): (role, name, email, recorded at, monotonic)
        self._recorded: OrderedDict[tuple[str, str], tuple[Any, ...]] = OrderedDict()
        self._failures = LogBudget(log)

    async def record(self, who: Identity) -> None:
        """Record ``who`` unless this process did so recently with the same details.
        A failure is logged (at most now and then) and does not fail the caller."""
        key = (who.center, who.user_id)
        details = (who.role.value, who.name, who.email)
        known = self._recorded.get(key)
        now = time.monotonic()
        if known is not None and known[:3] == details and now - known[3] < self._refresh_s:
            self._recorded.move_to_end(key)
            return
        seen = Seen(who.center, who.user_id, who.role.value, who.name, who.email)
        try:
            async with self._db.begin() as db:
                await PeopleRepository(db).seen([seen], utcnow())
        except Exception as exc:
            self._failures.log(
                logging.WARNING, "recording %s in the directory failed: %r", key, exc
            )
            return
        self._recorded[key] = (*details, now)
        self._recorded.move_to_end(key)
        if len(self._recorded) > REMEMBERED:
            self._recorded.popitem(last=False)


class PersonView(TypedDict):
    """Someone of the center's directory; ``source`` says how they came in."""

    user_id: str
    role: str
    full_name: str | None
    email_address: str | None
    source: str
    first_seen_at: IsoTime | None
    last_seen_at: IsoTime | None


class ImportResult(TypedDict):
    created: int
    updated: int


class ChildView(TypedDict):
    student_id: str
    full_name: str | None


class ParentLinkView(TypedDict):
    parent_id: str
    student_id: str


def person_view(person: Person) -> PersonView:
    return {
        "user_id": person.user_id,
        "role": person.role,
        "full_name": person.name,
        "email_address": person.email,
        "source": person.source,
        "first_seen_at": iso(person.first_seen_at),
        "last_seen_at": iso(person.last_seen_at),
    }


class PeopleQuery(PageQuery):
    role: Role | None = None
    search: Annotated[str, StringConstraints(max_length=200)] | None = None
    # A super admin names the center; everyone else reads their own.
    center_id: Id | None = None


class PersonIn(Body):
    user_id: Id
    role: Role
    full_name: Name | None = None
    email_address: Email | None = None


class PeopleImport(Body):
    center_id: Id | None = None
    people: Annotated[list[PersonIn], Field(min_length=1, max_length=MAX_IMPORT)]


class ChildLink(Body):
    student_id: Id


def _center(who: Identity, asked: str | None) -> str:
    """The center a request reads or writes: the caller's own; a super admin's choice."""
    if asked is None or asked == who.center:
        return who.center
    if who.role is Role.SUPER_ADMIN:
        return asked
    raise HubError(ErrorCode.FORBIDDEN, "only a super admin reads or writes another center")


def _require(who: Identity, roles: frozenset[Role], what: str) -> None:
    if who.role not in roles:
        raise HubError(ErrorCode.FORBIDDEN, f"role {who.role.value} may not {what}")


@routes.get("/api/v1/people")
@documented(PersonView, query=PeopleQuery, envelope=Envelope.PAGE)
async def list_people(request: web.Request) -> web.Response:
    """The center's directory, by name; ``search`` matches names, emails and ids."""
    who = identity(request)
    _require(who, DIRECTORY_READERS, "read the directory")
    params = parse_query(request, PeopleQuery)
    center = _center(who, params.center_id)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        role = params.role.value if params.role is not None else None
        rows, total = await PeopleRepository(db).page(center, page, role=role, search=params.search)
    return listing([person_view(p) for p in rows], page, total)


@routes.get("/api/v1/people/{user_id}")
@documented(PersonView)
async def get_person(request: web.Request) -> web.Response:
    """Someone of the caller's center (anyone may read themself)."""
    who = identity(request)
    user_id = request.match_info["user_id"]
    if user_id != who.user_id:
        _require(who, DIRECTORY_READERS, "read the directory")
    async with request.app[DB]() as db:
        person = await PeopleRepository(db).get(who.center, user_id)
    if person is None:
        raise not_found("person", user_id)
    return ok(person_view(person))


@routes.post("/api/v1/people/import")
@documented(ImportResult, body=PeopleImport)
async def import_people(request: web.Request) -> web.Response:
    """All or nothing: every listed person is added or updated, in one transaction."""
    who = identity(request)
    _require(who, DIRECTORY_WRITERS, "import people")
    body = await parse_body(request, PeopleImport)
    center = _center(who, body.center_id)
    ids = [p.user_id for p in body.people]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise HubError(
            ErrorCode.VALIDATION_ERROR,
            "each user_id may be listed once",
            details={"user_ids": repeated},
        )
    people = [Imported(p.user_id, p.role.value, p.full_name, p.email_address) for p in body.people]
    async with request.app[DB].begin() as db:
        created, updated = await PeopleRepository(db).imported(center, people)
        record_change(
            request,
            db,
            who,
            center,
            "people.import",
            "center",
            center,
            {"created": created, "updated": updated, "user_ids": ids[:50]},
        )
    return ok(ImportResult(created=created, updated=updated))


# -- parents and their children --------------------------------------------


@routes.get("/api/v1/people/{parent_id}/children")
@documented(list[ChildView])
async def list_children(request: web.Request) -> web.Response:
    """The students a parent is linked to."""
    who = identity(request)
    parent_id = request.match_info["parent_id"]
    themself = who.role is Role.PARENT and who.user_id == parent_id
    if not themself:
        _require(who, DIRECTORY_READERS - {Role.TUTOR, Role.ASSESSOR}, "read parents' links")
    async with request.app[DB]() as db:
        if not themself:
            # As GET /people/{user_id}: someone the center does not know (another
            # center's parent included) is not found, not an empty list.
            _expect_role(
                await PeopleRepository(db).get(who.center, parent_id), parent_id, Role.PARENT
            )
        children = await ParentLinks(db).children(who.center, parent_id)
        people = await PeopleRepository(db).by_ids(who.center, children)
    return ok(
        [
            ChildView(student_id=c, full_name=people[c].name if c in people else None)
            for c in children
        ]
    )


@routes.post("/api/v1/people/{parent_id}/children")
@documented(ParentLinkView, body=ChildLink, status=201)
async def link_child(request: web.Request) -> web.Response:
    """Link a parent to a student of the center."""
    who = identity(request)
    _require(who, DIRECTORY_WRITERS, "link a parent to a child")
    parent_id = request.match_info["parent_id"]
    body = await parse_body(request, ChildLink)
    async with request.app[DB].begin() as db:
        people = await PeopleRepository(db).by_ids(who.center, [parent_id, body.student_id])
        _expect_role(people.get(parent_id), parent_id, Role.PARENT)
        _expect_role(people.get(body.student_id), body.student_id, Role.STUDENT)
        links = ParentLinks(db)
        if await links.is_parent(who.center, parent_id, body.student_id):
            raise HubError(
                ErrorCode.CONFLICT,
                f"{parent_id!r} is already linked to {body.student_id!r}",
                error_code="ALREADY_LINKED",
            )
        links.link(who.center, parent_id, body.student_id, by=who.user_id)
        _audit_link(db, request, who, "parent.link", parent_id, body.student_id)
    return ok(ParentLinkView(parent_id=parent_id, student_id=body.student_id), status=201)


@routes.delete("/api/v1/people/{parent_id}/children/{student_id}")
@documented(envelope=Envelope.NONE, status=204)
async def unlink_child(request: web.Request) -> web.Response:
    """Unlink a parent from a student."""
    who = identity(request)
    _require(who, DIRECTORY_WRITERS, "unlink a parent from a child")
    parent_id, student_id = request.match_info["parent_id"], request.match_info["student_id"]
    async with request.app[DB].begin() as db:
        if not await ParentLinks(db).unlink(who.center, parent_id, student_id):
            raise not_found("parent link", f"{parent_id}/{student_id}")
        _audit_link(db, request, who, "parent.unlink", parent_id, student_id)
    return web.Response(status=204)


def _name(person: Person | None) -> str | None:
    return person.name if person is not None else None


def _expect_role(person: Person | None, user_id: str, role: Role) -> None:
    if person is None:
        raise not_found("person", user_id)
    if person.role != role.value:
        raise HubError(
            ErrorCode.VALIDATION_ERROR,
            f"{user_id!r} is a {person.role}, expected a {role.value}",
            details={"user_id": user_id, "role": person.role},
        )


def _audit_link(
    db: AsyncSession, request: web.Request, who: Identity, action: str, parent: str, child: str
) -> None:
    record_change(request, db, who, who.center, action, "person", parent, {"student_id": child})
