"""The replay timeline: one student's session on one time axis, a page at a time.

Two streams are merged: the canvas op log in seq order (the player applies the
patches in that order, so they are never reordered by their times, which come from
the clock of whichever hub stored them) and every other entry (help, mode,
assignments, attendance, exercises, timers) in time order. The merge takes the
earlier head, the other entry on a tie. A cursor names the last patch seq and the
last other entry a page sent, so the next page goes on from exactly there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StringConstraints
from typing_extensions import TypedDict

from canvas.document import empty_document
from persistence.models import (
    EnrollmentEventKind,
    HelpRequest,
    Mode,
)
from persistence.repositories import StudentHistory, StudentRows
from persistence.views import IsoTime, iso
from realtime.base.codec import encoded_size
from realtime.base.errors import ErrorCode, HubError
from rest.canvases import canvas_key
from rest.http import ok, parse_query
from rest.keys import CANVASES, DB
from rest.openapi import documented
from rest.schemas import Body
from rooms.timers import AlertKind

routes = web.RouteTableDef()

DEFAULT_LIMIT = 200
MAX_LIMIT = 1_000
# The ops of the patches of one page, in bytes of JSON (a page holds at least one entry).
MAX_PAGE_OPS_BYTES = 1024 * 1024


class TimelineQuery(Body):
    cursor: Annotated[str, StringConstraints(max_length=1_000)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT


class PatchEntry(TypedDict):
    """A patch of the student's canvas (the student's strokes, the tutor's marks)."""

    id: str
    at: IsoTime
    kind: Literal["patch"]
    seq: int
    epoch: str
    author: Literal["student", "tutor"]
    author_id: str
    ops: list[Any]


class HelpEntry(TypedDict):
    """A step in the life of one of the student's help requests."""

    id: str
    at: IsoTime
    kind: Literal["help"]
    event: Literal["raised", "escalated", "answered", "resolved", "cancelled"]
    help_id: str
    priority: str
    message: str
    exercise_id: str | None
    handled_by: str | None
    response: str | None


class ModeEntry(TypedDict):
    """The tutor switched the student to Teach or Observe."""

    id: str
    at: IsoTime
    kind: Literal["mode"]
    mode: Literal["TEACH", "OBSERVE"]
    changed_by: str


class AssignmentEntry(TypedDict):
    """The tutor assigned the student an exercise."""

    id: str
    at: IsoTime
    kind: Literal["assignment"]
    exercise: dict[str, Any]
    assigned_by: str


class AttendanceEntry(TypedDict):
    """The student joined or left (their connected stretches), or staff marked them."""

    id: str
    at: IsoTime
    kind: Literal["attendance"]
    event: Literal["joined", "left", "marked"]
    status: str | None
    marked_by: str | None


class ExerciseEntry(TypedDict):
    """The student started or completed an exercise (progress as last reported)."""

    id: str
    at: IsoTime
    kind: Literal["exercise"]
    event: Literal["started", "completed"]
    exercise_id: str
    progress_pct: int


class TimerEntry(TypedDict):
    """A tutor timer of the student's, or of the whole session (``student_id`` null)."""

    id: str
    at: IsoTime
    kind: Literal["timer"]
    event: Literal["started", "warned", "ended", "cancelled"]
    timer_id: str
    label: str
    student_id: str | None
    ends_at: IsoTime


TimelineEntry = Annotated[
    PatchEntry
    | HelpEntry
    | ModeEntry
    | AssignmentEntry
    | AttendanceEntry
    | ExerciseEntry
    | TimerEntry,
    Field(discriminator="kind"),
]


class CanvasBase(TypedDict):
    """The document the page's patches start from (seq 0: the empty document)."""

    seq: int
    doc: dict[str, Any]


class TimelineView(TypedDict):
    """One page of a student's replay timeline."""

    session_id: str
    student_id: str
    starts_at: IsoTime
    ends_at: IsoTime
    started_at: IsoTime | None
    ended_at: IsoTime | None
    initial_mode: str
    base: CanvasBase | None
    entries: list[TimelineEntry]
    next_cursor: str
    has_more: bool


@dataclass(frozen=True, slots=True)
class Other:
    """A timeline entry that is not a patch, with its place in time order: its time,
    then the start of what it belongs to (a help request, an interval...), then that
    thing's id, then its step in it."""

    at: datetime
    since: datetime
    group: tuple[str, str]
    step: int
    entry: dict[str, Any]

    def key(self) -> tuple[datetime, datetime, tuple[str, str], int]:
        return (self.at, self.since, self.group, self.step)


@dataclass(frozen=True, slots=True)
class Cursor:
    seq: int
    other: str | None  # the id of the last non-patch entry sent

    def encode(self) -> str:
        raw = json.dumps({"seq": self.seq, "other": self.other}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            seq, other = raw["seq"], raw["other"]
            if isinstance(seq, int) and seq >= 0 and (other is None or isinstance(other, str)):
                return cls(seq, other)
        except (binascii.Error, ValueError, TypeError, KeyError):
            pass
        raise HubError(
            ErrorCode.VALIDATION_ERROR,
            "cursor is not one this route answered; expected the next_cursor of a page",
            details={"field": "cursor"},
        )


@routes.get("/api/v1/sessions/{session_id}/canvases/{student_id}/timeline")
@documented(TimelineView, query=TimelineQuery)
async def get_timeline(request: web.Request) -> web.Response:
    """One student's session on one time axis, for replay.

    The canvas patches (the student's strokes and the tutor's annotations) with the
    student's help requests, mode changes, assignments, attendance, exercises and
    timers, ordered by time; a page at a time (``cursor``, ``limit``). The first page
    carries ``base``, the document its patches start from."""
    session, key = await canvas_key(request)
    params = parse_query(request, TimelineQuery)
    cursor = Cursor.decode(params.cursor) if params.cursor is not None else None
    await request.app[CANVASES].store.flush()
    async with request.app[DB]() as db:
        history = StudentHistory(db)
        base: CanvasBase | None = None
        if cursor is None:
            base = await _base(history, key.session_id, key.student_id)
            cursor = Cursor(base["seq"], None)
        others = sorted(_others(await history.rows(key.session_id, key.student_id)), key=Other.key)
        patches = await history.patches_after(
            key.session_id, key.student_id, cursor.seq, params.limit + 1
        )
    start = 0
    if cursor.other is not None:
        ids = [o.entry["id"] for o in others]
        if cursor.other not in ids:
            raise HubError(
                ErrorCode.VALIDATION_ERROR,
                f"cursor names entry {cursor.other!r}, which the timeline no longer holds",
                details={"field": "cursor"},
            )
        start = ids.index(cursor.other) + 1
    entries: list[Any] = []
    page_bytes = 0
    p, o = 0, start
    seq, other = cursor.seq, cursor.other
    while len(entries) < params.limit and (p < len(patches) or o < len(others)):
        if p == len(patches) or (o < len(others) and others[o].at <= patches[p].at):
            entries.append(others[o].entry)
            other = others[o].entry["id"]
            o += 1
            continue
        op = patches[p]
        size = encoded_size(op.ops)
        if entries and page_bytes + size > MAX_PAGE_OPS_BYTES:
            break
        page_bytes += size
        entries.append(
            PatchEntry(
                id=f"patch:{op.seq}",
                at=iso(op.at),
                kind="patch",
                seq=op.seq,
                epoch=op.epoch,
                author="tutor" if op.author == "tutor" else "student",
                author_id=op.author_id,
                ops=op.ops,
            )
        )
        seq = op.seq
        p += 1
    more = p < len(patches) or o < len(others)
    return ok(
        TimelineView(
            session_id=session.id,
            student_id=key.student_id,
            starts_at=iso(session.starts_at),
            ends_at=iso(session.ends_at),
            started_at=iso(session.started_at),
            ended_at=iso(session.ended_at),
            initial_mode=Mode.OBSERVE.value,
            base=base,
            entries=entries,
            next_cursor=Cursor(seq, other).encode(),
            has_more=more,
        )
    )


async def _base(history: StudentHistory, session_id: str, student_id: str) -> CanvasBase:
    """The empty document at seq 0, unless the op log no longer starts at seq 1 (the
    hub keeps it whole today): then the earliest snapshot the log goes on from."""
    first = await history.first_seq(session_id, student_id)
    if first is None or first <= 1:
        return CanvasBase(seq=0, doc=empty_document())
    snapshot = await history.snapshot_from(session_id, student_id, first - 1)
    if snapshot is None:
        raise HubError(
            ErrorCode.INTERNAL,
            f"the op log of {student_id!r} starts at seq {first} and no snapshot covers it",
        )
    return CanvasBase(seq=snapshot.seq, doc=snapshot.doc)


def _others(rows: StudentRows) -> Iterator[Other]:
    """Every entry but the patches, each with its place in time order."""
    yield from _help(rows)
    for change in rows.events:
        group = ("change", f"{change.id:020d}")
        if change.kind == EnrollmentEventKind.MODE.value:
            mode = {"id": f"mode:{change.id}", "mode": change.data["mode"]}
            entry = {**mode, "kind": "mode", "changed_by": change.actor_id}
        else:
            exercise = {"id": f"assignment:{change.id}", "exercise": change.data["exercise"]}
            entry = {**exercise, "kind": "assignment", "assigned_by": change.actor_id}
        yield Other(change.at, change.at, group, 0, {**entry, "at": iso(change.at)})
    for interval in rows.intervals:
        group = ("attendance", f"{interval.id:020d}")
        for step, (event, at) in enumerate(
            (("joined", interval.joined_at), ("left", interval.left_at))
        ):
            if at is not None:
                entry = _attendance(f"attendance:{interval.id}:{event}", at, event, None, None)
                yield Other(at, interval.joined_at, group, step, entry)
    for audit, status in rows.marks:
        entry = _attendance(f"mark:{audit.id}", audit.at, "marked", status, audit.actor_id)
        yield Other(audit.at, audit.at, ("mark", f"{audit.id:020d}"), 0, entry)
    for attempt in rows.attempts:
        for step, (event, at) in enumerate(
            (("started", attempt.started_at), ("completed", attempt.completed_at))
        ):
            if at is not None:
                entry = {
                    "id": f"exercise:{attempt.id}:{event}",
                    "at": iso(at),
                    "kind": "exercise",
                    "event": event,
                    "exercise_id": attempt.exercise_id,
                    "progress_pct": attempt.progress_pct,
                }
                yield Other(at, attempt.started_at, ("exercise", attempt.id), step, entry)
    for timer in rows.timers:
        steps = (
            ("started", timer.starts_at),
            ("warned", timer.warned_at),
            ("ended", timer.fired_at),
            ("cancelled", timer.cancelled_at),
        )
        for step, (event, at) in enumerate(steps):
            if at is not None:
                entry = {
                    "id": f"timer:{timer.id}:{event}",
                    "at": iso(at),
                    "kind": "timer",
                    "event": event,
                    "timer_id": timer.id,
                    "label": timer.label,
                    "student_id": timer.student_id,
                    "ends_at": iso(timer.ends_at),
                }
                yield Other(at, timer.starts_at, ("timer", timer.id), step, entry)


def _attendance(
    entry_id: str, at: datetime, event: str, status: str | None, marked_by: str | None
) -> dict[str, Any]:
    return {
        "id": entry_id,
        "at": iso(at),
        "kind": "attendance",
        "event": event,
        "status": status,
        "marked_by": marked_by,
    }


def _help(rows: StudentRows) -> Iterator[Other]:
    """Raised; escalated (the hub's HELP_WAITING alert, if it fired); answered (the
    tutor's first response); resolved or cancelled."""
    escalations = {
        a.subject: a.fired_at for a in rows.alerts if a.kind == AlertKind.HELP_WAITING.value
    }
    for request in rows.help:
        ended = request.status if request.resolved_at is not None else None
        steps = (
            ("raised", request.created_at),
            ("escalated", escalations.get(request.id)),
            ("answered", request.first_response_at),
            ("resolved" if ended == "RESOLVED" else "cancelled", request.resolved_at),
        )
        for step, (event, at) in enumerate(steps):
            if at is not None:
                yield Other(
                    at,
                    request.created_at,
                    ("help", request.id),
                    step,
                    _help_entry(request, event, at),
                )


def _help_entry(request: HelpRequest, event: str, at: datetime) -> dict[str, Any]:
    done = event in ("resolved", "cancelled")
    return {
        "id": f"help:{request.id}:{event}",
        "at": iso(at),
        "kind": "help",
        "event": event,
        "help_id": request.id,
        "priority": request.priority,
        "message": request.message,
        "exercise_id": request.exercise_key or None,
        "handled_by": request.handled_by if event != "raised" and event != "escalated" else None,
        "response": request.response if done else None,
    }
