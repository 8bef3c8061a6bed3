"""Help requests of a session over REST (staff see all, a student their own)."""

from __future__ import annotations

from aiohttp import web

from persistence.models import HelpRequest, HelpStatus
from persistence.repositories import Page, SessionRepository, page_of
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import Role
from rest.http import identity, listing, parse_query
from rest.keys import DB, HELP
from rest.openapi import Envelope, documented
from rest.schemas import PageQuery
from rest.sessions import readable_session, require_family
from rooms.access import can_read_roster
from rooms.help import HelpView, help_view

routes = web.RouteTableDef()


class HelpQuery(PageQuery):
    status: HelpStatus | None = None


@routes.get("/api/v1/sessions/{session_id}/help")
@documented(HelpView, query=HelpQuery, envelope=Envelope.PAGE)
async def list_help(request: web.Request) -> web.Response:
    """A session's help requests, oldest first (a student: their own, or a parent's children's)."""
    who = identity(request)
    params = parse_query(request, HelpQuery)
    page = Page(params.page, params.limit)
    desk = request.app[HELP]
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        conditions = [HelpRequest.session_id == session.id]
        if not can_read_roster(who, session):
            if who.role is not Role.STUDENT:
                raise HubError(ErrorCode.FORBIDDEN, "not a member of this session")
            # An enrolled student, their own requests.
            conditions.append(HelpRequest.student_id.in_(await require_family(db, who, session)))
        if params.status is not None:
            conditions.append(HelpRequest.status == params.status.value)
        rows, total = await page_of(
            db, HelpRequest, conditions, (HelpRequest.created_at, HelpRequest.id), page
        )
    now = desk.clock()
    return listing([help_view(r, now, desk.targets) for r in rows], page, total)
