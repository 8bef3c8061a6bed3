"""Cohorts: classes of students of a center. CRUD, and members set from a list of ids,
all or nothing and only the difference (``persistence.repositories.links``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Annotated, Any, NotRequired, Self, cast

from aiohttp import web
from pydantic import Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import TypedDict

from persistence.models import Cohort, CohortMember
from persistence.repositories import (
    CohortMembers,
    Cohorts,
    LinkChange,
    Page,
    UnknownIds,
    people_in_role,
)
from persistence.views import IsoTime, iso
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.identity import Identity, Role
from rest.http import identity, listing, ok, parse_body, parse_query
from rest.http import record_change as audit
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.relationships import acting_center, names, require_admin
from rest.schemas import Body, Id, PageQuery, Title
from rooms.access import in_tenant

routes = web.RouteTableDef()

BASE = "/api/v1/cohorts"
MAX_MEMBERS = 500
Description = Annotated[str, StringConstraints(max_length=2000)]
# Who may read a cohort of their center (students: only cohorts they are in).
STAFF = frozenset({Role.CENTER_ADMIN, Role.SUPERVISOR, Role.TUTOR, Role.SUPER_ADMIN})


def _unique(ids: list[str] | None) -> None:
    if ids is None:
        return
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"each student at most once; repeated: {', '.join(twice)}")


StudentIds = Annotated[list[Id], Field(max_length=MAX_MEMBERS)]


class CohortCreate(Body):
    name: Title
    description: Description | None = None
    student_ids: StudentIds = Field(default_factory=list)
    center_id: Id | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique(self.student_ids)
        return self


class CohortUpdate(Body):
    name: Title | None = None
    description: Description | None = None
    student_ids: StudentIds | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        for name in self.model_fields_set - {"description"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        _unique(self.student_ids)
        return self


class MembersAdd(Body):
    student_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_MEMBERS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique(self.student_ids)
        return self


class CohortListQuery(PageQuery):
    student_id: Id | None = None
    center_id: Id | None = None


class CohortView(TypedDict):
    """A cohort, as every reader sees it."""

    id: str
    center_id: str
    name: str
    description: str | None
    member_count: int
    created_by: str
    created_at: IsoTime
    updated_at: IsoTime


class CohortDetail(CohortView):
    """A cohort as staff see it: its members' ids, and what a change did."""

    student_ids: list[str]
    added: NotRequired[list[str]]
    removed: NotRequired[list[str]]


class MemberView(TypedDict):
    student_id: str
    student_name: str | None
    added_by: str
    created_at: IsoTime


def cohort_view(cohort: Cohort, member_count: int) -> CohortView:
    return {
        "id": cohort.id,
        "center_id": cohort.center_id,
        "name": cohort.name,
        "description": cohort.description,
        "member_count": member_count,
        "created_by": cohort.created_by,
        "created_at": iso(cohort.created_at),
        "updated_at": iso(cohort.updated_at),
    }


def member_view(member: CohortMember, people: dict[str, str | None]) -> MemberView:
    return {
        "student_id": member.student_id,
        "student_name": people.get(member.student_id),
        "added_by": member.added_by,
        "created_at": iso(member.created_at),
    }


async def _full_view(
    db: AsyncSession, cohort: Cohort, change: LinkChange | None = None
) -> CohortDetail:
    """The cohort with its members' ids (staff answers), and what a change did."""
    members = await CohortMembers(db).all(cohort.id)
    # (mypy cannot spread a TypedDict into one with optional keys)
    view = cast(
        CohortDetail,
        {**cohort_view(cohort, len(members)), "student_ids": [m.student_id for m in members]},
    )
    if change is not None:
        view["added"] = list(change.added)
        view["removed"] = list(change.removed)
    return view


async def readable_cohort(
    who: Identity, db: AsyncSession, cohort_id: str, *, for_update: bool = False
) -> Cohort:
    """The cohort if the caller may read it: 404 when deleted or of another center,
    403 within the center for a student not in it, a parent or an assessor."""
    cohort = await Cohorts(db).get(cohort_id, for_update=for_update)
    if cohort is None or not in_tenant(who, cohort.center_id):
        raise not_found("cohort", cohort_id)
    if who.role in STAFF:
        return cohort
    if who.role is Role.STUDENT and await CohortMembers(db).is_member(cohort.id, who.user_id):
        return cohort
    raise HubError(ErrorCode.FORBIDDEN, "not a member of this cohort")


def _unknown_students(center_id: str, exc: UnknownIds) -> HubError:
    return HubError(
        ErrorCode.NOT_FOUND,
        f"not students of center {center_id!r}: {', '.join(exc.ids)}; nothing was changed",
        error_code="STUDENT_NOT_FOUND",
        details={"student_ids": list(exc.ids)},
    )


def _name_taken(name: str) -> HubError:
    return HubError(
        ErrorCode.CONFLICT,
        f"the center already has a cohort named {name!r}",
        error_code="COHORT_EXISTS",
    )


async def _set_members(
    db: AsyncSession,
    who: Identity,
    cohort: Cohort,
    student_ids: Sequence[str],
    *,
    trusted: Collection[str] = (),
) -> LinkChange:
    """Members exactly ``student_ids``; each must be a student of the center, but for
    ``trusted`` ones (members already, kept by an add or a removal of someone else)."""
    students = people_in_role(db, cohort.center_id, Role.STUDENT.value)

    async def existing(ids: Sequence[str]) -> Collection[str]:
        new = [i for i in ids if i not in trusted]
        return {*(i for i in ids if i in trusted), *(await students(new) if new else ())}

    try:
        return await CohortMembers(db).set(cohort, student_ids, by=who.user_id, students=existing)
    except UnknownIds as exc:
        raise _unknown_students(cohort.center_id, exc) from None


@routes.post(BASE)
@documented(CohortDetail, body=CohortCreate, status=201)
async def create_cohort(request: web.Request) -> web.Response:
    """The cohort and its members in one transaction: any bad student id, nothing written."""
    who = identity(request)
    body = await parse_body(request, CohortCreate)
    require_admin(who, "create cohorts")
    center_id = acting_center(who, body.center_id)
    try:
        async with request.app[DB].begin() as db:
            cohorts = Cohorts(db)
            if await cohorts.named(center_id, body.name) is not None:
                raise _name_taken(body.name)
            cohort = Cohort(
                center_id=center_id,
                name=body.name,
                description=body.description,
                created_by=who.user_id,
            )
            cohorts.add(cohort)
            await db.flush()
            change = await _set_members(db, who, cohort, body.student_ids)
            audit(
                request,
                db,
                who,
                center_id,
                "cohort.create",
                "cohort",
                cohort.id,
                {"name": cohort.name, "added": list(change.added)},
            )
            view = await _full_view(db, cohort, change)
    except IntegrityError:
        raise _name_taken(body.name) from None
    return ok(view, status=201)


@routes.get(BASE)
@documented(CohortView, query=CohortListQuery, envelope=Envelope.PAGE)
async def list_cohorts(request: web.Request) -> web.Response:
    """Staff: the center's cohorts (``student_id``: those a student is in). A student: their own."""
    who = identity(request)
    params = parse_query(request, CohortListQuery)
    center_id = acting_center(who, params.center_id)
    student_id = params.student_id
    if who.role is Role.STUDENT:
        if student_id not in (None, who.user_id):
            raise HubError(ErrorCode.FORBIDDEN, "a student may only list their own cohorts")
        student_id = who.user_id
    elif who.role not in STAFF:
        raise HubError(ErrorCode.FORBIDDEN, f"role {who.role.value} may not list cohorts")
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        cohorts = Cohorts(db)
        rows, total = await cohorts.page(center_id, page, student_id=student_id)
        counts = await cohorts.member_counts(c.id for c in rows)
    return listing([cohort_view(c, counts[c.id]) for c in rows], page, total)


@routes.get(BASE + "/{cohort_id}")
@documented(CohortView | CohortDetail)
async def get_cohort(request: web.Request) -> web.Response:
    who = identity(request)
    async with request.app[DB]() as db:
        cohort = await readable_cohort(who, db, request.match_info["cohort_id"])
        if who.role is Role.STUDENT:
            # A student learns the class, never who else is in it.
            counts = await Cohorts(db).member_counts([cohort.id])
            return ok(cohort_view(cohort, counts[cohort.id]))
        view = await _full_view(db, cohort)
    return ok(view)


@routes.patch(BASE + "/{cohort_id}")
@documented(CohortDetail, body=CohortUpdate)
async def update_cohort(request: web.Request) -> web.Response:
    """Name, description, and (``student_ids``) the whole member list: the difference is
    added and removed in one transaction with the rest; any bad id, nothing changes."""
    who = identity(request)
    body = await parse_body(request, CohortUpdate)
    changes = body.model_dump(exclude_unset=True)
    try:
        async with request.app[DB].begin() as db:
            cohort = await readable_cohort(
                who, db, request.match_info["cohort_id"], for_update=True
            )
            require_admin(who, "change cohorts")
            name = changes.get("name")
            if name is not None and name != cohort.name:
                if await Cohorts(db).named(cohort.center_id, name) is not None:
                    raise _name_taken(name)
            for field in ("name", "description"):
                if field in changes:
                    setattr(cohort, field, changes[field])
            change = None
            if "student_ids" in changes:
                change = await _set_members(db, who, cohort, changes["student_ids"])
            details: dict[str, Any] = {"fields": sorted(changes)}
            if change is not None:
                details.update(added=list(change.added), removed=list(change.removed))
            audit(request, db, who, cohort.center_id, "cohort.update", "cohort", cohort.id, details)
            await db.flush()
            view = await _full_view(db, cohort, change)
    except IntegrityError:
        raise _name_taken(str(changes.get("name"))) from None
    return ok(view)


@routes.delete(BASE + "/{cohort_id}")
@documented(CohortDetail)
async def delete_cohort(request: web.Request) -> web.Response:
    """Soft deletion: gone from every read (404 after), rows kept, the name free again."""
    who = identity(request)
    async with request.app[DB].begin() as db:
        cohort = await readable_cohort(who, db, request.match_info["cohort_id"], for_update=True)
        require_admin(who, "delete cohorts")
        view = await _full_view(db, cohort)
        Cohorts(db).delete(cohort, by=who.user_id)
        audit(request, db, who, cohort.center_id, "cohort.delete", "cohort", cohort.id)
    return ok(view)


@routes.get(BASE + "/{cohort_id}/members")
@documented(MemberView, query=PageQuery, envelope=Envelope.PAGE)
async def list_members(request: web.Request) -> web.Response:
    who = identity(request)
    params = parse_query(request, PageQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        cohort = await readable_cohort(who, db, request.match_info["cohort_id"])
        if who.role not in STAFF:
            raise HubError(ErrorCode.FORBIDDEN, "only staff may list a cohort's students")
        rows, total = await CohortMembers(db).page(cohort.id, page)
        people = await names(db, cohort.center_id, (m.student_id for m in rows))
    return listing([member_view(m, people) for m in rows], page, total)


@routes.post(BASE + "/{cohort_id}/members")
@documented(CohortDetail, body=MembersAdd)
async def add_members(request: web.Request) -> web.Response:
    """Adds students (those already in stay as they are): all or nothing."""
    who = identity(request)
    body = await parse_body(request, MembersAdd)
    async with request.app[DB].begin() as db:
        cohort = await readable_cohort(who, db, request.match_info["cohort_id"], for_update=True)
        require_admin(who, "change cohorts")
        current = [m.student_id for m in await CohortMembers(db).all(cohort.id)]
        change = await _set_members(db, who, cohort, [*current, *body.student_ids], trusted=current)
        audit(
            request,
            db,
            who,
            cohort.center_id,
            "cohort.members.add",
            "cohort",
            cohort.id,
            {"added": list(change.added)},
        )
        view = await _full_view(db, cohort, change)
    return ok(view)


@routes.delete(BASE + "/{cohort_id}/members/{student_id}")
@documented(CohortDetail)
async def remove_member(request: web.Request) -> web.Response:
    who = identity(request)
    student_id = request.match_info["student_id"]
    async with request.app[DB].begin() as db:
        cohort = await readable_cohort(who, db, request.match_info["cohort_id"], for_update=True)
        require_admin(who, "change cohorts")
        members = CohortMembers(db)
        if not await members.is_member(cohort.id, student_id):
            raise not_found("member", student_id)
        current = [m.student_id for m in await members.all(cohort.id)]
        kept = [s for s in current if s != student_id]
        change = await _set_members(db, who, cohort, kept, trusted=kept)
        audit(
            request,
            db,
            who,
            cohort.center_id,
            "cohort.members.remove",
            "cohort",
            cohort.id,
            {"removed": list(change.removed)},
        )
        view = await _full_view(db, cohort, change)
    return ok(view)
