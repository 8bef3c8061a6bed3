"""Tutor notes of a session over REST, by visibility.

Staff read every note. A student reads the notes about themselves that the
tutor made visible to students; a parent, the notes about their children
(linked by a center admin) that the tutor made visible to parents.
"""

from __future__ import annotations

from aiohttp import web

from persistence.models import NoteVisibility, TutorNote
from persistence.repositories import Page, SessionRepository, page_of
from persistence.views import NoteView, note_view
from realtime.base.identity import Role
from rest.http import identity, listing, parse_query
from rest.keys import DB
from rest.openapi import Envelope, documented
from rest.schemas import Id, PageQuery
from rest.sessions import readable_session, require_family
from rooms.access import can_read_roster

routes = web.RouteTableDef()


class NotesQuery(PageQuery):
    student_id: Id | None = None


@routes.get("/api/v1/sessions/{session_id}/notes")
@documented(NoteView, query=NotesQuery, envelope=Envelope.PAGE)
async def list_notes(request: web.Request) -> web.Response:
    """A session's notes the caller may read (parents: the notes written for parents)."""
    who = identity(request)
    params = parse_query(request, NotesQuery)
    page = Page(params.page, params.limit)
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        conditions = [TutorNote.session_id == session.id]
        if params.student_id is not None:
            conditions.append(TutorNote.student_id == params.student_id)
        if not can_read_roster(who, session):
            family = await require_family(db, who, session)
            visible = NoteVisibility.PARENT if who.role is Role.PARENT else NoteVisibility.STUDENT
            conditions += [
                TutorNote.student_id.in_(family),
                TutorNote.visibility == visible.value,
            ]
        rows, total = await page_of(
            db, TutorNote, conditions, (TutorNote.created_at, TutorNote.id), page
        )
    return listing([note_view(n) for n in rows], page, total)
