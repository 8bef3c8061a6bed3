"""A course session's announcements, as its staff write them (students read them in ``student``)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from persistence.course_views import AnnouncementView, announcement_view
from persistence.models import (
    CourseSessionAnnouncement,
    utcnow,
)
from persistence.repositories import (
    AnnouncementRepository,
    Page,
)
from realtime.base.errors import ErrorCode, HubError
from rest.courses.common import (
    TEACHER,
    answer,
    audit,
    bad_request,
    body_of,
    conflict,
    created,
    jsonable,
    managed,
    query_of,
    readable,
    touched,
)
from rest.http import identity, listing
from rest.keys import COURSE_ANNOUNCEMENTS, DB
from rest.openapi import Envelope, documented
from rest.schemas import (
    AnnouncementCreate,
    AnnouncementListQuery,
    AnnouncementUpdate,
)

routes = web.RouteTableDef()


# --- Teacher: announcements --------------------------------------------------------------


def _announcement_not_found() -> HubError:
    return HubError(
        ErrorCode.NOT_FOUND, "Session announcement not found", error_code="ANNOUNCEMENT_NOT_FOUND"
    )


def _duplicate_title() -> HubError:
    return conflict(
        "An announcement with this title already exists in this session",
        "DUPLICATE_ANNOUNCEMENT_TITLE",
        "title",
    )


@routes.post(TEACHER + "/{session_id}/announcements")
@documented(AnnouncementView, body=AnnouncementCreate, status=201)
async def create_announcement(request: web.Request) -> web.Response:
    """Write an announcement (pushed live to connected students once visible)."""
    who = identity(request)
    body = await body_of(request, AnnouncementCreate)
    now = utcnow()
    if body.expires_at is not None and body.expires_at <= now:
        raise bad_request("expires_at must be in the future", "expires_at")
    try:
        async with request.app[DB].begin() as db:
            session = await managed(request, db)
            announcements = AnnouncementRepository(db)
            if await announcements.title_taken(session.id, body.title):
                raise _duplicate_title()
            announcement = CourseSessionAnnouncement(
                center_id=session.center_id,
                course_session_id=session.id,
                **body.model_dump(),
                **created(request, who),
            )
            db.add(announcement)
            await db.flush()
            audit(
                request,
                db,
                who,
                "course_announcement.create",
                session.center_id,
                "course_announcement",
                announcement.id,
                {"course_session_id": session.id, "title": announcement.title},
            )
    except IntegrityError:
        raise _duplicate_title() from None
    await request.app[COURSE_ANNOUNCEMENTS].push_due(announcement.id)
    return answer(announcement_view(announcement), status=201, message="Announcement created")


@routes.get(TEACHER + "/{session_id}/announcements")
@documented(AnnouncementView, query=AnnouncementListQuery, envelope=Envelope.PAGE)
async def list_announcements(request: web.Request) -> web.Response:
    """A course session's announcements, as staff see them."""
    params = query_of(request, AnnouncementListQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session = await readable(request, db)
        rows, total = await AnnouncementRepository(db).page(
            session.id,
            page,
            now=utcnow(),
            is_urgent=params.is_urgent,
            unexpired_only=params.active_only,
        )
    return listing([announcement_view(a) for a in rows], page, total)


@routes.patch(TEACHER + "/{session_id}/announcements/{announcement_id}")
@documented(AnnouncementView, body=AnnouncementUpdate)
async def update_announcement(request: web.Request) -> web.Response:
    """Change an announcement."""
    who = identity(request)
    body = await body_of(request, AnnouncementUpdate)
    changes = body.model_dump(exclude_unset=True)
    try:
        async with request.app[DB].begin() as db:
            session = await managed(request, db)
            announcements = AnnouncementRepository(db)
            announcement = await announcements.get(
                session.id, request.match_info["announcement_id"]
            )
            if announcement is None:
                raise _announcement_not_found()
            scheduled_for = changes.get("scheduled_for", announcement.scheduled_for)
            expires_at = changes.get("expires_at", announcement.expires_at)
            if scheduled_for is not None and expires_at is not None and expires_at <= scheduled_for:
                raise bad_request("expires_at must be after scheduled_for", "expires_at")
            if "title" in changes and await announcements.title_taken(
                session.id, changes["title"], but=announcement.id
            ):
                raise _duplicate_title()
            for name, value in changes.items():
                setattr(announcement, name, value)
            if "scheduled_for" in changes and announcement.pushed_at is not None:
                # Rescheduled: pushed again when it becomes visible at its new time.
                if scheduled_for is not None and scheduled_for > utcnow():
                    announcement.pushed_at = None
            touched(announcement, request, who)
            audit(
                request,
                db,
                who,
                "course_announcement.update",
                session.center_id,
                "course_announcement",
                announcement.id,
                jsonable(changes),
            )
    except IntegrityError:
        raise _duplicate_title() from None
    await request.app[COURSE_ANNOUNCEMENTS].push_due(announcement.id)
    return answer(announcement_view(announcement), message="Announcement updated")


@routes.delete(TEACHER + "/{session_id}/announcements/{announcement_id}")
@documented(envelope=Envelope.NONE, status=204)
async def delete_announcement(request: web.Request) -> web.Response:
    """Delete an announcement (soft)."""
    who = identity(request)
    async with request.app[DB].begin() as db:
        session = await managed(request, db)
        announcement = await AnnouncementRepository(db).get(
            session.id, request.match_info["announcement_id"]
        )
        if announcement is None:
            raise _announcement_not_found()
        announcement.is_deleted = True
        announcement.is_active = False
        announcement.deleted_at = utcnow()
        announcement.deleted_by = who.user_id
        touched(announcement, request, who)
        audit(
            request,
            db,
            who,
            "course_announcement.delete",
            session.center_id,
            "course_announcement",
            announcement.id,
        )
    return web.Response(status=204)
