"""Help requests of a session over REST (staff see all, a student their own)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from persistence.models import HelpRequest, HelpStatus
from persistence.repositories import Page, SessionRepository
from realtime.errors import ErrorCode, HubError
from realtime.identity import Role
from realtime.keys import DB, HELP
from rest.http import identity, listing, parse_query
from rest.schemas import PageQuery
from rest.sessions import readable_session
from rooms.access import can_read_roster
from rooms.help import help_view

routes = web.RouteTableDef()


class HelpQuery(PageQuery):
    status: HelpStatus | None = None


@routes.get("/api/v1/sessions/{session_id}/help")
async def list_help(request: web.Request) -> web.Response:
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
            conditions.append(HelpRequest.student_id == who.user_id)
        if params.status is not None:
            conditions.append(HelpRequest.status == params.status.value)
        total = await db.scalar(select(func.count()).select_from(HelpRequest).where(*conditions))
        rows = (
            await db.scalars(
                select(HelpRequest)
                .where(*conditions)
                .order_by(HelpRequest.created_at, HelpRequest.id)
                .offset(page.offset)
                .limit(page.size)
            )
        ).all()
    now = desk.clock()
    return listing([help_view(r, now, desk.targets) for r in rows], page, int(total or 0))
