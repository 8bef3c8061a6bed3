"""A course session's settings: enrollment approval, late joins, dropping, expiry."""

from __future__ import annotations

from aiohttp import web

from persistence.course_views import SettingsView, settings_view
from rest.courses.common import (
    TEACHER,
    answer,
    audit,
    body_of,
    managed,
    readable,
    settings_of,
    touched,
)
from rest.http import identity
from rest.keys import DB
from rest.openapi import documented
from rest.schemas import SettingsUpdate

routes = web.RouteTableDef()


# --- Teacher: settings -------------------------------------------------------------------


@routes.get(TEACHER + "/{session_id}/settings")
@documented(SettingsView)
async def get_settings(request: web.Request) -> web.Response:
    """A course session's settings."""
    async with request.app[DB]() as db:
        session = await readable(request, db)
        settings = await settings_of(db, session)
    return answer(settings_view(settings))


@routes.put(TEACHER + "/{session_id}/settings")
@documented(SettingsView, body=SettingsUpdate)
async def put_settings(request: web.Request) -> web.Response:
    """Change a course session's settings."""
    who = identity(request)
    body = await body_of(request, SettingsUpdate)
    changes = body.model_dump(exclude_unset=True)
    async with request.app[DB].begin() as db:
        session = await managed(request, db)
        settings = await settings_of(db, session)
        for name, value in changes.items():
            setattr(settings, name, value)
        touched(settings, request, who)
        audit(
            request,
            db,
            who,
            "course_settings.update",
            session.center_id,
            "course_session",
            session.id,
            changes,
        )
    return answer(settings_view(settings), message="Session settings updated")
