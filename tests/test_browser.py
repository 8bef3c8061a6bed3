"""The pages in a real headless Chromium (the system's, driven by Playwright) against
a real hub process on loopback: the student's whiteboard with a tutor on a stock
python-socketio client. Every page runs under the hub's CSP; a violation fails."""

from __future__ import annotations

import pytest

from tests.browser import STUDENT, Lesson, board, draw, lesson, stored
from tests.support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
__all__ = ["lesson"]  # the fixture


async def test_a_stroke_reaches_the_tutor_and_the_tutors_marks_and_mode_reach_the_student(
    lesson: Lesson,
) -> None:
    context = await lesson.browser.new_context(viewport={"width": 1280, "height": 800})
    page = await lesson.open_student(context)
    await draw(page, 0.1, 0.1)
    relayed = await eventually(
        lambda: [
            item
            for event in lesson.tutor.events("canvas:patches")
            for item in event["items"]
            if item["student_id"] == STUDENT
        ],
        what="the student's stroke relayed to the tutor",
    )
    (op,) = relayed[0]["ops"]
    assert op["op"] == "add" and op["path"].startswith("/elements/")
    assert op["value"]["type"] == "stroke" and len(op["value"]["points"]) > 5
    assert relayed[0]["author"] == "student"

    mark = {"type": "ellipse", "cx": 800, "cy": 500, "rx": 120, "ry": 60}
    ack = await lesson.tutor.call(
        "canvas:patch",
        {
            "session_id": lesson.session_id,
            "student_id": STUDENT,
            "ops": [{"op": "add", "path": "/annotations/circle-1", "value": mark}],
        },
    )
    assert ack["ok"], ack
    await page.locator('#board .annotations [data-id="circle-1"]').wait_for()
    assert (await board(page))["document"]["annotations"]["circle-1"] == mark

    assert await page.locator("#mode").get_attribute("data-mode") == "OBSERVE"
    ack = await lesson.tutor.call(
        "mode:set", {"session_id": lesson.session_id, "student_id": STUDENT, "mode": "TEACH"}
    )
    assert ack["ok"], ack
    await page.locator('#mode[data-mode="TEACH"]').wait_for()
    assert lesson.problems() == []


async def test_drawing_offline_loses_no_stroke_and_a_reload_shows_the_hubs_document(
    lesson: Lesson,
) -> None:
    context = await lesson.browser.new_context(viewport={"width": 1024, "height": 768})
    page = await lesson.open_student(context)
    await draw(page, 0.1, 0.1)
    await page.wait_for_function("() => window.__board.seq === 1 && !window.__board.pending")

    await context.set_offline(True)
    await page.locator('#status[data-status="offline"]').wait_for()
    await draw(page, 0.2, 0.3)  # mid-lesson, with no network
    await page.keyboard.press("r")  # the rectangle tool, by keyboard
    box = await page.locator("#board").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 300, box["y"] + 300)
    await page.mouse.down()
    await page.mouse.move(box["x"] + 420, box["y"] + 380, steps=5)
    await page.mouse.up()
    await page.keyboard.press("p")
    await draw(page, 0.5, 0.5)
    offline = await board(page)
    assert offline["pending"] == 3 and len(offline["document"]["elements"]) == 4
    assert (await stored(lesson))["seq"] == 1  # nothing reached the hub meanwhile

    await context.set_offline(False)
    await page.locator('#status[data-status="online"]').wait_for()
    await page.wait_for_function("() => window.__board.pending === 0")
    hub_copy = await stored(lesson)
    shown = await board(page)
    # Every stroke drawn offline is on the hub, and the page holds exactly its copy.
    assert sorted(hub_copy["doc"]["elements"]) == sorted(offline["document"]["elements"])
    assert shown["document"] == hub_copy["doc"]
    assert (
        (shown["seq"], shown["epoch"])
        == (hub_copy["seq"], hub_copy["epoch"])
        == (4, shown["epoch"])
    )

    await page.reload()
    await page.wait_for_function("() => window.__board && window.__board.epoch")
    assert (await board(page))["document"] == hub_copy["doc"]
    assert lesson.problems() == []
