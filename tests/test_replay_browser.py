"""The replay page (/replay) in a real headless Chromium against a real hub process on
loopback: a session recorded with stock python-socketio clients (the student's
strokes, the tutor's mark and mode changes, a help request, a leave and a rejoin)
plays back to exactly the board the hub stores, and scrubs to any point of it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from playwright.async_api import Page

from realtime.base.identity import Role
from tests.browser import STUDENT, Lesson, lesson
from tests.support import Client, eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# So each stroke stands apart from the next on the time axis (the scrub test picks a
# moment between two of them); it waits for nothing.
STROKE_GAP_S = 0.05
__all__ = ["lesson"]  # the fixture: a hub, a session with s1 enrolled, its tutor, a browser


def stroke(n: int) -> dict[str, Any]:
    points = [[100 + 40 * n + i * 6, 100 + 30 * n + i * 3] for i in range(8)]
    return {"type": "stroke", "points": points, "color": "#1f2937", "width": 4, "z": n}


async def draw(client: Client, session_id: str, element_id: str, n: int) -> None:
    ops = [{"op": "add", "path": f"/elements/{element_id}", "value": stroke(n)}]
    ack = await client.call("canvas:patch", {"session_id": session_id, "ops": ops})
    assert ack["ok"], ack
    await asyncio.sleep(STROKE_GAP_S)


async def record(lesson: Lesson) -> None:
    """s1 draws, the tutor marks and switches to Teach, s1 asks for help and the tutor
    resolves it, back to Observe; s1 leaves, comes back, draws and erases a stroke."""
    sid, tutor = lesson.session_id, lesson.tutor
    student = await Client().connect(lesson.hub.url, lesson.hub.token(STUDENT, Role.STUDENT))
    assert (await student.join(sid))["ok"]
    for n in range(1, 4):
        await draw(student, sid, f"e{n}", n)
    mark = {"type": "ellipse", "cx": 300, "cy": 200, "rx": 80, "ry": 40}
    ops = [{"op": "add", "path": "/annotations/m1", "value": mark}]
    ack = await tutor.call("canvas:patch", {"session_id": sid, "student_id": STUDENT, "ops": ops})
    assert ack["ok"], ack
    mode = {"session_id": sid, "student_id": STUDENT}
    assert (await tutor.call("mode:set", {**mode, "mode": "TEACH"}))["ok"]
    asked = await student.call("help:request", {"session_id": sid, "message": "stuck on 3"})
    update = {"session_id": sid, "help_id": asked["help_request"]["id"]}
    assert (await tutor.call("help:update", {**update, "status": "IN_PROGRESS"}))["ok"]
    resolved = {**update, "status": "RESOLVED", "response": "see the circle"}
    assert (await tutor.call("help:update", resolved))["ok"]
    assert (await tutor.call("mode:set", {**mode, "mode": "OBSERVE"}))["ok"]
    await student.sio.disconnect()
    await eventually(
        lambda: any(
            u["student_id"] == STUDENT and u["left_at"] for u in tutor.events("attendance:update")
        ),
        what="s1 offline",
    )
    back = await Client().connect(lesson.hub.url, lesson.hub.token(STUDENT, Role.STUDENT))
    try:
        assert (await back.join(sid))["ok"]
        await draw(back, sid, "e4", 4)
        erase = [{"op": "remove", "path": "/elements/e2"}]
        assert (await back.call("canvas:patch", {"session_id": sid, "ops": erase}))["ok"]
    finally:
        await back.sio.disconnect()


async def open_replay(lesson: Lesson, sub: str, role: Role) -> Page:
    context = await lesson.browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.on("console", lambda m: lesson.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: lesson.console.append(f"pageerror: {e}"))
    token = lesson.hub.token(sub, role)
    await page.goto(
        f"{lesson.hub.url}/replay?session={lesson.session_id}&student={STUDENT}#token={token}"
    )
    await page.locator('body[data-loaded="true"]').wait_for()
    return page


async def shown(page: Page) -> Any:
    return await page.evaluate("() => window.__replay")


async def stored(lesson: Lesson) -> Any:
    path = f"/api/v1/sessions/{lesson.session_id}/canvases/{STUDENT}"
    status, body = await lesson.tutor_api.get(path)
    assert status == 200, body
    return body["data"]


async def timeline(lesson: Lesson) -> list[dict[str, Any]]:
    path = f"/api/v1/sessions/{lesson.session_id}/canvases/{STUDENT}/timeline"
    status, body = await lesson.tutor_api.get(path, limit=1000)
    assert status == 200 and not body["data"]["has_more"], body
    entries: list[dict[str, Any]] = body["data"]["entries"]
    return entries


def millis(iso: str) -> int:
    """As the page reads an entry's time: whole milliseconds."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


async def scrub(page: Page, at_ms: float) -> None:
    """Move the scrubber as a pointer would, to `at_ms` on the page's axis."""
    start = (await shown(page))["start"]
    await page.evaluate(
        """(value) => {
            const range = document.querySelector("#scrubber");
            range.value = String(value);
            range.dispatchEvent(new Event("input", { bubbles: true }));
        }""",
        round(at_ms - start),
    )


async def test_the_replay_plays_a_recorded_session_to_the_board_the_hub_stores(
    lesson: Lesson,
) -> None:
    await record(lesson)
    hub_copy = await stored(lesson)
    assert set(hub_copy["doc"]["elements"]) == {"e1", "e3", "e4"}
    page = await open_replay(lesson, "tutor-1", Role.TUTOR)
    first = await shown(page)
    assert first["index"] == 0 and first["document"]["elements"] == {}

    await page.locator('[data-speed="16"]').click()
    await page.get_by_label("Skip idle gaps").check()
    await page.locator("#board").click()  # the keys go to the page, not to a button
    await page.keyboard.press("Space")
    await page.wait_for_function(
        "() => { const r = window.__replay; return !r.playing && r.index === r.total; }",
        timeout=20_000,
    )
    end = await shown(page)
    assert end["document"] == hub_copy["doc"]
    drawn = page.locator("#board .elements path")
    assert await drawn.count() == 3
    assert await page.locator('#board .annotations [data-id="m1"]').count() == 1
    assert lesson.problems() == []


async def test_scrubbing_stepping_and_the_event_list(lesson: Lesson) -> None:
    await record(lesson)
    entries = await timeline(lesson)
    strokes = [e for e in entries if e["kind"] == "patch" and e["author"] == "student"]
    page = await open_replay(lesson, "tutor-1", Role.TUTOR)

    # Just after the second stroke, before the third: exactly the first two strokes.
    second, third = millis(strokes[1]["at"]), millis(strokes[2]["at"])
    assert third > second + 1
    await scrub(page, second + 1)
    there = await shown(page)
    assert sorted(there["document"]["elements"]) == ["e1", "e2"]
    assert there["document"]["annotations"] == {}
    assert await page.locator("#board .elements path").count() == 2

    # The side list: the non-canvas events, in the timeline's order.
    items = page.locator("#events button")
    listed = [
        (await b.get_attribute("data-kind"), await b.get_attribute("data-event"))
        for b in await items.all()
    ]
    assert listed == [
        ("attendance", "joined"),
        ("mode", "TEACH"),
        ("help", "raised"),
        ("help", "answered"),
        ("help", "resolved"),
        ("mode", "OBSERVE"),
        ("attendance", "left"),
        ("attendance", "joined"),
        ("attendance", "left"),
    ]
    assert "stuck on 3" in await items.nth(2).inner_text()

    # Choosing the resolve goes there: the tutor's mark is on, the mode still Teach.
    await items.nth(4).click()
    resolved = await shown(page)
    resolved_index = next(i for i, e in enumerate(entries) if e.get("event") == "resolved")
    assert resolved["index"] == resolved_index + 1
    assert "m1" in resolved["document"]["annotations"]
    assert await page.locator("#mode").inner_text() == "Mode: Teach"
    assert (
        await page.locator("#events li[aria-current] button").get_attribute("data-event")
        == "resolved"
    )

    # The arrows step one entry; End and Home go to the ends.
    await page.locator("#scrubber").focus()
    await page.keyboard.press("ArrowRight")
    assert (await shown(page))["index"] == resolved_index + 2
    await page.keyboard.press("ArrowLeft")
    await page.keyboard.press("ArrowLeft")
    assert (await shown(page))["index"] == resolved_index
    await page.keyboard.press("End")
    assert (await shown(page))["document"] == (await stored(lesson))["doc"]
    await page.keyboard.press("Home")
    assert (await shown(page))["document"]["elements"] == {}
    assert lesson.problems() == []


async def test_the_student_replays_their_own_session(lesson: Lesson) -> None:
    await record(lesson)
    page = await open_replay(lesson, STUDENT, Role.STUDENT)
    await page.locator("#scrubber").focus()
    await page.keyboard.press("End")
    assert (await shown(page))["document"] == (await stored(lesson))["doc"]
    assert lesson.problems() == []


async def test_seeking_a_long_board_rebuilds_it_from_checkpoints_exactly(lesson: Lesson) -> None:
    """130 patches (drawn and some erased): stepping back from the end crosses the
    page's checkpoints (every 50 patches) and each position equals the hub's document
    at that seq (`?at_seq=`)."""
    sid = lesson.session_id
    student = await Client().connect(lesson.hub.url, lesson.hub.token(STUDENT, Role.STUDENT))
    try:
        assert (await student.join(sid))["ok"]
        for n in range(130):
            if n % 10 == 9:
                ops = [{"op": "remove", "path": f"/elements/e{n - 5}"}]
            else:
                ops = [{"op": "add", "path": f"/elements/e{n}", "value": stroke(n % 20)}]
            ack = await student.call("canvas:patch", {"session_id": sid, "ops": ops})
            assert ack["ok"], ack
    finally:
        await student.sio.disconnect()
    entries = await timeline(lesson)
    seq_at = [0]  # the seq each position of the timeline stands at
    for entry in entries:
        seq_at.append(entry["seq"] if entry["kind"] == "patch" else seq_at[-1])
    page = await open_replay(lesson, "tutor-1", Role.TUTOR)
    await page.locator("#scrubber").focus()
    await page.keyboard.press("End")
    index = len(entries)
    for back in (0, 3, 37, 1, 40, 29, 12):
        for _ in range(back):
            await page.keyboard.press("ArrowLeft")
        index -= back
        here = await shown(page)
        assert here["index"] == index
        path = f"/api/v1/sessions/{sid}/canvases/{STUDENT}"
        status, body = await lesson.tutor_api.get(path, at_seq=seq_at[index])
        assert status == 200, body
        assert here["document"] == body["data"]["doc"], f"at seq {seq_at[index]}"
    assert index < 50  # crossed the checkpoints at 100 and 50 on the way
    assert lesson.problems() == []
