"""Tutor-student relationships (many-to-many, with history), "my students", "my tutors",
and the subjects and levels each tutor teaches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Self

from aiohttp import web
from pydantic import Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import TypedDict

from persistence.models import TutorStudent, TutorSubject, utcnow
from persistence.repositories import (
    Page,
    ParentLinks,
    PeopleRepository,
    RelationshipQuery,
    Relationships,
    SessionQuery,
    SessionRepository,
    TutorSubjects,
)
from persistence.views import IsoDate, IsoTime, SessionView, iso, session_view
from realtime.base.errors import ErrorCode, HubError, not_found
from realtime.base.identity import Identity, Role
from rest.http import identity, listing, ok, parse_body, parse_query
from rest.http import record_change as audit
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import Body, Id, Level, Notes, PageQuery
from rooms.access import in_tenant

routes = web.RouteTableDef()

BASE = "/api/v1/relationships"
Subject = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]

ADMINS = frozenset({Role.CENTER_ADMIN, Role.SUPER_ADMIN})
CENTER_READERS = frozenset({Role.CENTER_ADMIN, Role.SUPERVISOR, Role.SUPER_ADMIN})


# ---- shared with rest.cohorts -------------------------------------------------------


def acting_center(who: Identity, center_id: str | None) -> str:
    """The center a change is made in or a list reads: the token's, or (a super admin
    only) the one named."""
    if center_id is None or center_id == who.center:
        return who.center
    if who.role is not Role.SUPER_ADMIN:
        raise HubError(ErrorCode.FORBIDDEN, "only a super admin may act in another center")
    return center_id


def require_admin(who: Identity, what: str) -> None:
    if who.role not in ADMINS:
        raise HubError(
            ErrorCode.FORBIDDEN,
            f"role {who.role.value} may not {what}; expected a center admin or a super admin",
        )


async def names(db: AsyncSession, center_id: str, user_ids: Iterable[str]) -> dict[str, str | None]:
    people = await PeopleRepository(db).by_ids(center_id, sorted(set(user_ids)))
    return {user_id: person.name for user_id, person in people.items()}


async def require_person(db: AsyncSession, center_id: str, user_id: str, role: Role) -> None:
    """NOT_FOUND (``TUTOR_NOT_FOUND``, ``STUDENT_NOT_FOUND``) unless ``user_id`` is in the
    center's directory with ``role``: another center's people are not found either."""
    person = await PeopleRepository(db).get(center_id, user_id)
    if person is None or person.role != role.value:
        error = not_found(role.value.lower(), user_id)
        error.message = f"{role.value.lower()} {user_id!r} not found in center {center_id!r}"
        raise error


# ---- request models ------------------------------------------------------------------


class Status(StrEnum):
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    ALL = "ALL"


def _active(status: Status) -> bool | None:
    return None if status is Status.ALL else status is Status.ACTIVE


class RelationshipCreate(Body):
    tutor_id: Id
    student_id: Id
    subject: Subject
    start_date: date | None = None
    notes: Notes | None = None
    center_id: Id | None = None


class RelationshipUpdate(Body):
    start_date: date | None = None
    notes: Notes | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        if "start_date" in self.model_fields_set and self.start_date is None:
            raise ValueError("start_date cannot be null")
        return self


class RelationshipEnd(Body):
    end_date: date | None = None
    notes: Notes | None = None


class RelationshipListQuery(PageQuery):
    tutor_id: Id | None = None
    student_id: Id | None = None
    subject: Subject | None = None
    status: Status = Status.ALL
    center_id: Id | None = None


class PeopleListQuery(PageQuery):
    status: Status = Status.ACTIVE


class SubjectLevel(Body):
    subject: Subject
    level: Level | None = None


class SubjectsReplace(Body):
    subjects: Annotated[list[SubjectLevel], Field(max_length=100)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen = [s.subject for s in self.subjects]
        twice = sorted({s for s in seen if seen.count(s) > 1})
        if twice:
            raise ValueError(f"each subject at most once; repeated: {', '.join(twice)}")
        return self


# ---- views ---------------------------------------------------------------------------


class RelationshipView(TypedDict):
    """A tutor teaching a student a subject, from ``start_date`` (to ``end_date``)."""

    id: str
    center_id: str
    tutor_id: str
    tutor_name: str | None
    student_id: str
    student_name: str | None
    subject: str
    start_date: IsoDate
    end_date: IsoDate | None
    active: bool
    notes: str | None
    created_by: str
    ended_by: str | None
    created_at: IsoTime
    updated_at: IsoTime


class SubjectView(TypedDict):
    subject: str
    level: str | None
    created_at: IsoTime
    updated_at: IsoTime


class TutorSubjectsView(TypedDict):
    tutor_id: str
    subjects: list[SubjectView]


class SubjectsChange(TutorSubjectsView):
    """The tutor's subjects after a change, and the subjects it added and removed."""

    added: list[str]
    removed: list[str]


def relationship_view(rel: TutorStudent, people: dict[str, str | None]) -> RelationshipView:
    return {
        "id": rel.id,
        "center_id": rel.center_id,
        "tutor_id": rel.tutor_id,
        "tutor_name": people.get(rel.tutor_id),
        "student_id": rel.student_id,
        "student_name": people.get(rel.student_id),
        "subject": rel.subject,
        "start_date": rel.start_date.isoformat(),
        "end_date": rel.end_date.isoformat() if rel.end_date else None,
        "active": rel.active,
        "notes": rel.notes,
        "created_by": rel.created_by,
        "ended_by": rel.ended_by,
        "created_at": iso(rel.created_at),
        "updated_at": iso(rel.updated_at),
    }


async def _views(db: AsyncSession, rows: Sequence[TutorStudent]) -> list[RelationshipView]:
    by_center: dict[str, set[str]] = {}
    for r in rows:
        by_center.setdefault(r.center_id, set()).update((r.tutor_id, r.student_id))
    known = {c: await names(db, c, ids) for c, ids in by_center.items()}
    return [relationship_view(r, known[r.center_id]) for r in rows]


def subject_view(row: TutorSubject) -> SubjectView:
    return {
        "subject": row.subject,
        "level": row.level,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


# ---- who may read what ---------------------------------------------------------------


async def readable_relationship(
    who: Identity, db: AsyncSession, relationship_id: str, *, for_update: bool = False
) -> TutorStudent:
    """The relationship if the caller may read it: 404 across centers, 403 within."""
    rel = await Relationships(db).get(relationship_id, for_update=for_update)
    if rel is None or not in_tenant(who, rel.center_id):
        raise not_found("relationship", relationship_id)
    if who.role in CENTER_READERS:
        return rel
    if who.role is Role.TUTOR and who.user_id == rel.tutor_id:
        return rel
    if who.role is Role.STUDENT and who.user_id == rel.student_id:
        return rel
    if who.role is Role.PARENT and await ParentLinks(db).is_parent(
        rel.center_id, who.user_id, rel.student_id
    ):
        return rel
    raise HubError(ErrorCode.FORBIDDEN, "not a party to this relationship")


# ---- relationships -------------------------------------------------------------------


@routes.post(BASE)
@documented(RelationshipView, body=RelationshipCreate, status=201)
async def create_relationship(request: web.Request) -> web.Response:
    """Record that a tutor teaches a student a subject."""
    who = identity(request)
    body = await parse_body(request, RelationshipCreate)
    require_admin(who, "create tutor-student relationships")
    center_id = acting_center(who, body.center_id)
    try:
        async with request.app[DB].begin() as db:
            await require_person(db, center_id, body.tutor_id, Role.TUTOR)
            await require_person(db, center_id, body.student_id, Role.STUDENT)
            relationships = Relationships(db)
            existing = await relationships.active_one(
                center_id, body.tutor_id, body.student_id, body.subject
            )
            if existing is not None:
                raise _exists(body.subject, existing.id)
            rel = TutorStudent(
                center_id=center_id,
                tutor_id=body.tutor_id,
                student_id=body.student_id,
                subject=body.subject,
                start_date=body.start_date or utcnow().date(),
                active=True,
                notes=body.notes,
                created_by=who.user_id,
            )
            relationships.add(rel)
            await db.flush()
            audit(
                request,
                db,
                who,
                center_id,
                "relationship.create",
                "relationship",
                rel.id,
                {"tutor_id": rel.tutor_id, "student_id": rel.student_id, "subject": rel.subject},
            )
            view = (await _views(db, [rel]))[0]
    except IntegrityError:
        # Lost a race with an identical create.
        raise _exists(body.subject, None) from None
    return ok(view, status=201)


def _exists(subject: str, relationship_id: str | None) -> HubError:
    return HubError(
        ErrorCode.CONFLICT,
        f"this tutor already teaches this student {subject!r} (an active relationship)",
        error_code="RELATIONSHIP_EXISTS",
        details={"relationship_id": relationship_id} if relationship_id else None,
    )


@routes.get(BASE)
@documented(RelationshipView, query=RelationshipListQuery, envelope=Envelope.PAGE)
async def list_relationships(request: web.Request) -> web.Response:
    """The center's tutor-student relationships the caller may read."""
    who = identity(request)
    params = parse_query(request, RelationshipListQuery)
    query = RelationshipQuery(
        center_id=acting_center(who, params.center_id),
        tutor_id=params.tutor_id,
        student_id=params.student_id,
        subject=params.subject,
        active=_active(params.status),
    )
    if who.role is Role.TUTOR:
        if params.tutor_id not in (None, who.user_id):
            raise HubError(ErrorCode.FORBIDDEN, "a tutor may only list their own relationships")
        query = replace(query, tutor_id=who.user_id)
    elif who.role is Role.STUDENT:
        if params.student_id not in (None, who.user_id):
            raise HubError(ErrorCode.FORBIDDEN, "a student may only list their own relationships")
        query = replace(query, student_id=who.user_id)
    elif who.role not in CENTER_READERS:
        raise HubError(ErrorCode.FORBIDDEN, f"role {who.role.value} may not list relationships")
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        rows, total = await Relationships(db).page(query, page)
        data = await _views(db, rows)
    return listing(data, page, total)


@routes.get(BASE + "/{relationship_id}")
@documented(RelationshipView)
async def get_relationship(request: web.Request) -> web.Response:
    """One tutor-student relationship."""
    who = identity(request)
    async with request.app[DB]() as db:
        rel = await readable_relationship(who, db, request.match_info["relationship_id"])
        view = (await _views(db, [rel]))[0]
    return ok(view)


@routes.patch(BASE + "/{relationship_id}")
@documented(RelationshipView, body=RelationshipUpdate)
async def update_relationship(request: web.Request) -> web.Response:
    """Change a relationship's subject, dates or notes."""
    who = identity(request)
    body = await parse_body(request, RelationshipUpdate)
    async with request.app[DB].begin() as db:
        rel = await readable_relationship(
            who, db, request.match_info["relationship_id"], for_update=True
        )
        require_admin(who, "change tutor-student relationships")
        changes = body.model_dump(exclude_unset=True)
        start = changes.get("start_date", rel.start_date)
        if rel.end_date is not None and start > rel.end_date:
            raise HubError(ErrorCode.VALIDATION_ERROR, "start_date must not be after end_date")
        for name, value in changes.items():
            setattr(rel, name, value)
        audit(
            request,
            db,
            who,
            rel.center_id,
            "relationship.update",
            "relationship",
            rel.id,
            {"fields": sorted(changes)},
        )
        await db.flush()
        view = (await _views(db, [rel]))[0]
    return ok(view)


@routes.post(BASE + "/{relationship_id}/end")
@documented(RelationshipView, body=RelationshipEnd, body_required=False)
async def end_relationship(request: web.Request) -> web.Response:
    """Ends it (inactive, ``end_date``); its history and its sessions stay. Idempotent."""
    who = identity(request)
    body = await parse_body(request, RelationshipEnd) if request.body_exists else None
    async with request.app[DB].begin() as db:
        rel = await readable_relationship(
            who, db, request.match_info["relationship_id"], for_update=True
        )
        require_admin(who, "change tutor-student relationships")
        if rel.active:
            end = (body.end_date if body else None) or utcnow().date()
            if end < rel.start_date:
                raise HubError(
                    ErrorCode.VALIDATION_ERROR,
                    "end_date must not be before start_date",
                    details={"start_date": rel.start_date.isoformat(), "end_date": end.isoformat()},
                )
            rel.active = False
            rel.end_date = end
            rel.ended_by = who.user_id
            if body is not None and body.notes is not None:
                rel.notes = body.notes
            audit(
                request,
                db,
                who,
                rel.center_id,
                "relationship.end",
                "relationship",
                rel.id,
                {"end_date": end.isoformat()},
            )
            await db.flush()
        view = (await _views(db, [rel]))[0]
    return ok(view)


@routes.get(BASE + "/{relationship_id}/sessions")
@documented(SessionView, query=PageQuery, envelope=Envelope.PAGE)
async def relationship_sessions(request: web.Request) -> web.Response:
    """The tutor's sessions the student was enrolled in while the relationship ran
    (``starts_at`` from ``start_date`` through ``end_date``, UTC days)."""
    who = identity(request)
    params = parse_query(request, PageQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        rel = await readable_relationship(who, db, request.match_info["relationship_id"])
        query = SessionQuery(
            center_id=rel.center_id,
            tutor_id=rel.tutor_id,
            student_ids=(rel.student_id,),
            starts_from=_day_start(rel.start_date),
            starts_before=_day_start(rel.end_date + timedelta(days=1)) if rel.end_date else None,
        )
        rows, total = await SessionRepository(db).list(query, page)
    return listing([session_view(s) for s in rows], page, total)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# ---- my students, my tutors ----------------------------------------------------------


async def _people_list(
    request: web.Request, *, tutor_id: str | None, student_id: str | None
) -> web.Response:
    who = identity(request)
    params = parse_query(request, PeopleListQuery)
    page = Page(params.page, params.limit)
    query = RelationshipQuery(
        center_id=who.center,
        tutor_id=tutor_id,
        student_id=student_id,
        active=_active(params.status),
    )
    async with request.app[DB]() as db:
        rows, total = await Relationships(db).page(query, page)
        data = await _views(db, rows)
    return listing(data, page, total)


def _me(request: web.Request, key: str) -> str:
    value = request.match_info[key]
    return identity(request).user_id if value == "me" else value


@routes.get("/api/v1/me/students")
@documented(RelationshipView, query=PeopleListQuery, envelope=Envelope.PAGE)
async def my_students(request: web.Request) -> web.Response:
    """The calling tutor's students."""
    who = identity(request)
    if who.role is not Role.TUTOR:
        raise HubError(ErrorCode.FORBIDDEN, "only a tutor has students")
    return await _people_list(request, tutor_id=who.user_id, student_id=None)


@routes.get("/api/v1/me/tutors")
@documented(RelationshipView, query=PeopleListQuery, envelope=Envelope.PAGE)
async def my_tutors(request: web.Request) -> web.Response:
    """The calling student's tutors."""
    who = identity(request)
    if who.role is not Role.STUDENT:
        raise HubError(ErrorCode.FORBIDDEN, "only a student has tutors")
    return await _people_list(request, tutor_id=None, student_id=who.user_id)


@routes.get("/api/v1/tutors/{tutor_id}/students")
@documented(RelationshipView, query=PeopleListQuery, envelope=Envelope.PAGE)
async def tutor_students(request: web.Request) -> web.Response:
    """A tutor's students (``me``: the caller)."""
    who = identity(request)
    tutor_id = _me(request, "tutor_id")
    if not (who.role is Role.TUTOR and who.user_id == tutor_id):
        if who.role not in CENTER_READERS:
            raise HubError(ErrorCode.FORBIDDEN, "a tutor may only list their own students")
        async with request.app[DB]() as db:
            await require_person(db, who.center, tutor_id, Role.TUTOR)
    return await _people_list(request, tutor_id=tutor_id, student_id=None)


@routes.get("/api/v1/students/{student_id}/tutors")
@documented(RelationshipView, query=PeopleListQuery, envelope=Envelope.PAGE)
async def student_tutors(request: web.Request) -> web.Response:
    """A student's tutors (``me``: the caller)."""
    who = identity(request)
    student_id = _me(request, "student_id")
    if not (who.role is Role.STUDENT and who.user_id == student_id):
        async with request.app[DB]() as db:
            parent = who.role is Role.PARENT and await ParentLinks(db).is_parent(
                who.center, who.user_id, student_id
            )
            if not parent and who.role not in CENTER_READERS:
                raise HubError(ErrorCode.FORBIDDEN, "not allowed to list this student's tutors")
            if not parent:
                await require_person(db, who.center, student_id, Role.STUDENT)
    return await _people_list(request, tutor_id=None, student_id=student_id)


# ---- tutors' subjects and levels -----------------------------------------------------


@routes.get("/api/v1/tutors/{tutor_id}/subjects")
@documented(TutorSubjectsView)
async def get_subjects(request: web.Request) -> web.Response:
    """Any caller of the center may read what a tutor teaches (to match tutors)."""
    who = identity(request)
    tutor_id = _me(request, "tutor_id")
    async with request.app[DB]() as db:
        if not (who.role is Role.TUTOR and tutor_id == who.user_id):
            await require_person(db, who.center, tutor_id, Role.TUTOR)
        rows = await TutorSubjects(db).of(who.center, tutor_id)
    return ok(TutorSubjectsView(tutor_id=tutor_id, subjects=[subject_view(r) for r in rows]))


@routes.put("/api/v1/tutors/{tutor_id}/subjects")
@documented(SubjectsChange, body=SubjectsReplace)
async def replace_subjects(request: web.Request) -> web.Response:
    """The tutor's whole list of subjects: only the difference is written, in one
    transaction; subjects kept keep their rows (and get the level sent)."""
    who = identity(request)
    tutor_id = _me(request, "tutor_id")
    body = await parse_body(request, SubjectsReplace)
    own = who.role is Role.TUTOR and who.user_id == tutor_id
    if not own:
        require_admin(who, "set another tutor's subjects")
    levels = {s.subject: s.level for s in body.subjects}
    async with request.app[DB].begin() as db:
        if not own:
            await require_person(db, who.center, tutor_id, Role.TUTOR)
        subjects = TutorSubjects(db)
        change = await subjects.replace(who.center, tutor_id, levels)
        audit(
            request,
            db,
            who,
            who.center,
            "tutor.subjects",
            "tutor",
            tutor_id,
            {"added": list(change.added), "removed": list(change.removed)},
        )
        await db.flush()
        rows = await subjects.of(who.center, tutor_id)
    return ok(
        SubjectsChange(
            tutor_id=tutor_id,
            subjects=[subject_view(r) for r in rows],
            added=list(change.added),
            removed=list(change.removed),
        )
    )
