"""Canvases over REST: the current document, its snapshot history, the document at
a seq, and an SVG rendering for reviewing work after the session."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import Field
from typing_extensions import TypedDict

from canvas.document import plain
from canvas.store import CanvasKey, CatchUp
from canvas.svg import render_svg
from persistence.models import LiveSession
from persistence.repositories import CanvasRepository, EnrollmentRepository, Page, SessionRepository
from persistence.views import IsoTime, iso
from realtime.base.errors import not_found
from rest.http import identity, listing, ok, parse_query
from rest.keys import CANVASES, DB
from rest.openapi import Envelope, documented
from rest.schemas import Body, PageQuery
from rest.sessions import readable_session
from rooms.access import require_student_reader

routes = web.RouteTableDef()
MAX_SEQ = 2**63 - 1

BASE = "/api/v1/sessions/{session_id}/canvases/{student_id}"


class AtSeq(Body):
    # A seq fits a signed 64-bit column (SQLite's INTEGER, Postgres's BIGINT).
    at_seq: Annotated[int, Field(ge=0, le=MAX_SEQ)] | None = None


class CanvasView(TypedDict):
    """A student's canvas document at a position of its op log."""

    student_id: str
    seq: int
    epoch: str
    doc: Any


class SnapshotView(TypedDict):
    seq: int
    epoch: str
    created_at: IsoTime


async def canvas_key(request: web.Request) -> tuple[LiveSession, CanvasKey]:
    """The canvas of the URL if the caller may read it: staff, or the student themself."""
    who = identity(request)
    student_id = request.match_info["student_id"]
    async with request.app[DB]() as db:
        session = await readable_session(request, SessionRepository(db))
        require_student_reader(who, session, student_id)
        if await EnrollmentRepository(db).get(session.id, student_id) is None:
            raise not_found("enrollment", student_id)
    return session, CanvasKey(session.center_id, session.id, student_id)


async def _read(request: web.Request) -> CatchUp:
    _, key = await canvas_key(request)
    params = parse_query(request, AtSeq)
    return await request.app[CANVASES].store.read(key, params.at_seq)


@routes.get(BASE)
@documented(CanvasView, query=AtSeq)
async def get_canvas(request: web.Request) -> web.Response:
    """A student's canvas now, or at ``at_seq``."""
    canvas = await _read(request)
    return ok(
        CanvasView(
            student_id=request.match_info["student_id"],
            seq=canvas.position.offset,
            epoch=canvas.position.epoch,
            doc=canvas.doc,
        )
    )


@routes.get(BASE + "/svg")
@documented(str, query=AtSeq, envelope=Envelope.BARE, media_type="image/svg+xml")
async def get_canvas_svg(request: web.Request) -> web.Response:
    """A student's canvas rendered as SVG (``X-Canvas-Seq`` names its seq)."""
    canvas = await _read(request)
    return web.Response(
        text=render_svg(plain(canvas.doc or {})),
        content_type="image/svg+xml",
        headers={
            # The SVG is user content: no scripts, no sniffing, even if opened directly.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "X-Canvas-Seq": str(canvas.position.offset),
        },
    )


@routes.get(BASE + "/snapshots")
@documented(SnapshotView, query=PageQuery, envelope=Envelope.PAGE)
async def list_snapshots(request: web.Request) -> web.Response:
    """The stored snapshots of a student's canvas."""
    _, key = await canvas_key(request)
    params = parse_query(request, PageQuery)
    page = Page(params.page, params.limit)
    await request.app[CANVASES].store.flush()
    async with request.app[DB]() as db:
        rows, total = await CanvasRepository(db).snapshots(key.session_id, key.student_id, page)
    return listing(
        [SnapshotView(seq=r.seq, epoch=r.epoch, created_at=iso(r.created_at)) for r in rows],
        page,
        total,
    )
