"""The replay timeline: one student's session on one time axis, driven by real clients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonpatch
import pytest

import rest.timeline
from persistence.models import CanvasOp, CanvasSnapshot
from tests.conftest import Hub
from tests.support import Api, Client, eventually
from tests.test_canvas import live_session, mark, new_session, patch

SESSIONS = "/api/v1/sessions"


def stroke(element_id: str, x: int) -> list[dict[str, Any]]:
    return [{"op": "add", "path": f"/elements/{element_id}", "value": {"type": "line", "x": x}}]


def timeline_path(session_id: str, student_id: str) -> str:
    return f"{SESSIONS}/{session_id}/canvases/{student_id}/timeline"


async def read_all(api: Api, path: str, **params: Any) -> tuple[list[dict[str, Any]], Any]:
    """Every entry, page after page; the first page's base."""
    status, got = await api.get(path, **params)
    assert status == 200, got
    first = got["data"]
    entries, page = list(first["entries"]), first
    while page["has_more"]:
        status, got = await api.get(path, cursor=page["next_cursor"], **params)
        assert status == 200, got
        page = got["data"]
        assert page["base"] is None
        entries += page["entries"]
    return entries, first["base"]


def steps(entries: list[dict[str, Any]]) -> list[str]:
    def name(entry: dict[str, Any]) -> str:
        if entry["kind"] == "patch":
            return f"patch:{entry['author']}"
        if entry["kind"] == "mode":
            return f"mode:{entry['mode']}"
        return f"{entry['kind']}:{entry.get('event')}"

    return [name(e) for e in entries]


async def one_students_session(hub: Hub) -> tuple[str, Client, dict[str, Client]]:
    """s1's session: strokes, a tutor mark, Teach and back, a help request answered and
    resolved, a leave and a rejoin, a stroke after it, an exercise, a staff mark."""
    session_id, tutor, students = await live_session(hub, ("s1", "s2"))
    s1 = students["s1"]
    for n in range(3):
        assert (await patch(s1, session_id, stroke(f"e{n}", n)))["ok"]
    assert (await patch(students["s2"], session_id, stroke("other", 9)))["ok"]
    assert (await patch(tutor, session_id, mark("m1"), student_id="s1"))["ok"]
    mode = {"session_id": session_id, "student_id": "s1"}
    assert (await tutor.call("mode:set", {**mode, "mode": "TEACH"}))["ok"]
    asked = await s1.call("help:request", {"session_id": session_id, "message": "stuck"})
    help_id = asked["help_request"]["id"]
    update = {"session_id": session_id, "help_id": help_id}
    assert (await tutor.call("help:update", {**update, "status": "IN_PROGRESS"}))["ok"]
    done = {**update, "status": "RESOLVED", "response": "see the mark"}
    assert (await tutor.call("help:update", done))["ok"]
    assert (await tutor.call("mode:set", {**mode, "mode": "OBSERVE"}))["ok"]
    await s1.sio.disconnect()
    await eventually(
        lambda: any(
            u["student_id"] == "s1" and u["left_at"] for u in tutor.events("attendance:update")
        ),
        what="s1 offline",
    )
    back = await hub.connect("s1", "STUDENT")
    assert (await back.join(session_id))["ok"]
    assert (await patch(back, session_id, stroke("e3", 3)))["ok"]
    exercise = {"id": "ex-1", "title": "Fractions"}
    assert (await tutor.call("exercise:assign", {**mode, "exercise": exercise}))["ok"]
    progress = {"session_id": session_id, "exercise_id": "ex-1", "progress_pct": 100}
    assert (await back.call("exercise:progress", {**progress, "completed": True}))["ok"]
    marks = {"session_id": session_id, "records": [{"student_id": "s1", "status": "LATE"}]}
    status, _ = await hub.as_("admin-1", "CENTER_ADMIN").post("/api/v1/attendance/bulk", marks)
    assert status == 200
    return session_id, tutor, {"s1": back, "s2": students["s2"]}


async def test_one_students_session_in_order_and_its_patches_rebuild_the_board(
    hub: Hub,
) -> None:
    session_id, _, _ = await one_students_session(hub)
    tutor = hub.as_("tutor-1", "TUTOR")
    entries, base = await read_all(tutor, timeline_path(session_id, "s1"))
    assert steps(entries) == [
        "attendance:joined",
        "patch:student",
        "patch:student",
        "patch:student",
        "patch:tutor",
        "mode:TEACH",
        "help:raised",
        "help:answered",
        "help:resolved",
        "mode:OBSERVE",
        "attendance:left",
        "attendance:joined",
        "patch:student",
        "assignment:None",
        "exercise:started",
        "exercise:completed",
        "attendance:marked",
    ]
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times)
    assert len({e["id"] for e in entries}) == len(entries)
    patches = [e for e in entries if e["kind"] == "patch"]
    assert [p["seq"] for p in patches] == [1, 2, 3, 4, 5]
    assert {p["author_id"] for p in patches} == {"s1", "tutor-1"}
    resolved = next(e for e in entries if e.get("event") == "resolved")
    assert (resolved["response"], resolved["handled_by"]) == ("see the mark", "tutor-1")
    marked = entries[-1]
    assert (marked["status"], marked["marked_by"]) == ("LATE", "admin-1")
    assert next(e for e in entries if e["kind"] == "assignment")["exercise"]["id"] == "ex-1"
    # The board from empty, patch by patch, is exactly the canvas the hub serves.
    assert base == {"seq": 0, "doc": {"elements": {}, "annotations": {}, "meta": {}}}
    board = base["doc"]
    for entry in patches:
        board = jsonpatch.apply_patch(board, entry["ops"])
    status, canvas = await tutor.get(f"{SESSIONS}/{session_id}/canvases/s1")
    assert status == 200
    assert board == canvas["data"]["doc"] and canvas["data"]["seq"] == 5
    assert set(board["elements"]) == {"e0", "e1", "e2", "e3"}


async def test_pages_are_bounded_and_go_on_where_the_last_one_stopped(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, _, students = await one_students_session(hub)
    tutor = hub.as_("tutor-1", "TUTOR")
    path = timeline_path(session_id, "s1")
    whole, _ = await read_all(tutor, path, limit=1000)
    status, first = await tutor.get(path, limit=3)
    assert status == 200 and len(first["data"]["entries"]) == 3
    paged, _ = await read_all(tutor, path, limit=3)
    assert paged == whole
    # Nothing after the last page, until something happens: its cursor goes on from there.
    status, got = await tutor.get(path)
    assert status == 200 and not got["data"]["has_more"]
    status, after = await tutor.get(path, cursor=got["data"]["next_cursor"])
    assert (after["data"]["entries"], after["data"]["has_more"]) == ([], False)
    assert (await patch(students["s1"], session_id, stroke("e4", 4)))["ok"]
    status, after = await tutor.get(path, cursor=got["data"]["next_cursor"])
    assert [e["id"] for e in after["data"]["entries"]] == ["patch:6"]
    whole.append(after["data"]["entries"][0])
    # The page's patch ops are capped in bytes too (here: each patch on a page of its own).
    monkeypatch.setattr(rest.timeline, "MAX_PAGE_OPS_BYTES", 10)
    small, _ = await read_all(tutor, path, limit=1000)
    assert small == whole
    cursor: dict[str, str] = {}
    while True:
        status, got = await tutor.get(path, limit=1000, **cursor)
        assert [e["kind"] for e in got["data"]["entries"]].count("patch") <= 1
        if not got["data"]["has_more"]:
            break
        cursor = {"cursor": got["data"]["next_cursor"]}
    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "not-a-cursor"}, {"since": 1}):
        status, refused = await tutor.get(path, **bad)
        assert (status, refused["errorCode"]) == (422, "VALIDATION_ERROR"), bad


async def test_who_reads_a_students_timeline(hub: Hub) -> None:
    session_id, _, _ = await one_students_session(hub)
    path = timeline_path(session_id, "s1")
    for sub, role in (
        ("s1", "STUDENT"),
        ("tutor-1", "TUTOR"),
        ("admin-1", "CENTER_ADMIN"),
        ("sup-1", "SUPERVISOR"),
        ("assessor-1", "ASSESSOR"),
        ("root", "SUPER_ADMIN"),
    ):
        status, got = await hub.as_(sub, role).get(path)
        assert status == 200, (role, got)
    for sub, role in (("s2", "STUDENT"), ("tutor-2", "TUTOR"), ("p1", "PARENT")):
        status, got = await hub.as_(sub, role).get(path)
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), role
    status, got = await hub.as_("admin-1", "CENTER_ADMIN", center="c2").get(path)
    assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
    status, got = await hub.as_("tutor-1", "TUTOR").get(timeline_path(session_id, "nobody"))
    assert (status, got["errorCode"]) == (404, "ENROLLMENT_NOT_FOUND")


async def test_a_log_that_starts_after_a_snapshot_starts_from_that_snapshot(hub: Hub) -> None:
    """The hub keeps the op log whole; a log trimmed below a snapshot (a restore, an
    import) still replays: the first page's base is that snapshot."""
    session_id = await new_session(hub, ("s3",))
    doc = {"elements": {"old": {"type": "line", "x": 0}}, "annotations": {}, "meta": {}}
    now = datetime.now(UTC)
    key = {"center_id": "c1", "session_id": session_id, "student_id": "s3"}
    async with hub.db.begin() as db:
        db.add(CanvasSnapshot(**key, seq=2, epoch="e", doc=doc, created_at=now))
        db.add(
            CanvasOp(
                **key,
                seq=3,
                epoch="e",
                author="student",
                author_id="s3",
                ops=stroke("new", 1),
                at=now,
            )
        )
    entries, base = await read_all(hub.as_("tutor-1", "TUTOR"), timeline_path(session_id, "s3"))
    assert base == {"seq": 2, "doc": doc}
    assert [e["seq"] for e in entries if e["kind"] == "patch"] == [3]
