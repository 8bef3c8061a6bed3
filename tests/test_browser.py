"""The pages in a real headless Chromium (the system's, driven by Playwright) against
a real hub process on loopback: the student's whiteboard with a tutor on a stock
python-socketio client. Every page runs under the hub's CSP; a violation fails."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from realtime.base.identity import Role
from tests.conftest import need_service
from tests.processes import HubProcess, start_hub
from tests.support import Api, Client, eventually, session_body

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
STUDENT = "s1"
# What Chromium logs for a websocket tried with the network off (socket.io-client's
# reconnection attempts while the test holds the browser offline).
OFFLINE_NOTE = "net::ERR_INTERNET_DISCONNECTED"


@dataclass
class Lesson:
    """A hub process with one session, its tutor on a python-socketio client and one
    enrolled student, and a browser whose console is watched."""

    hub: HubProcess
    session_id: str
    tutor: Client
    tutor_api: Api
    browser: Browser
    console: list[str] = field(default_factory=list)

    def student_url(self) -> str:
        token = self.hub.token(STUDENT, Role.STUDENT, name="Sam Student")
        return f"{self.hub.url}/student?session={self.session_id}#token={token}"

    async def open_student(self, context: BrowserContext) -> Page:
        page = await context.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        await page.goto(self.student_url())
        await page.wait_for_function("() => window.__board && window.__board.epoch")
        return page

    def problems(self) -> list[str]:
        return console_problems(self.console)


def console_problems(console: list[str]) -> list[str]:
    """Console lines that mean a page broke: CSP violations, errors, failed loads
    (but the browser's own note of each reconnect tried while it is offline)."""
    return [
        line
        for line in console
        if "Content Security Policy" in line
        or (line.startswith(("pageerror", "error")) and OFFLINE_NOTE not in line)
    ]


def need_chromium() -> None:
    need_service(
        "Chromium",
        None if shutil.which(CHROMIUM) else f"{CHROMIUM} not found",
        hint="apt-get install chromium",
    )


@pytest.fixture
async def lesson(tmp_path: Path) -> AsyncIterator[Lesson]:
    need_chromium()
    hub = start_hub(tmp_path, f"browser-{secrets.token_hex(16)}")
    http = aiohttp.ClientSession()
    tutor = Client()
    try:
        tutor_api = Api(http, hub.url, hub.token("tutor-1", Role.TUTOR))
        status, created = await tutor_api.post("/api/v1/sessions", session_body())
        assert status == 201, created
        session_id = created["data"]["id"]
        status, enrolled = await tutor_api.post(
            f"/api/v1/sessions/{session_id}/enrollments",
            {"student_id": STUDENT, "student_name": "Sam Student"},
        )
        assert status == 201, enrolled
        await tutor.connect(hub.url, hub.token("tutor-1", Role.TUTOR))
        assert (await tutor.join(session_id))["ok"]
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                yield Lesson(hub, session_id, tutor, tutor_api, browser)
            finally:
                await browser.close()
    finally:
        if tutor.sio.connected:
            await tutor.sio.disconnect()
        await http.close()
        assert hub.stop() == 0, hub.log_tail()


async def draw(page: Page, x: float, y: float, *, steps: int = 12, board: str = "#board") -> None:
    """A pen stroke with the mouse, from (x, y) on a board (fractions of its size)."""
    box = await page.locator(board).bounding_box()
    assert box is not None
    left, top, width, height = box["x"], box["y"], box["width"], box["height"]
    await page.mouse.move(left + x * width, top + y * height)
    await page.mouse.down()
    for i in range(1, steps + 1):
        await page.mouse.move(left + (x + i * 0.01) * width, top + (y + i * 0.006) * height)
    await page.mouse.up()


async def board(page: Page) -> Any:
    return await page.evaluate("() => window.__board")


async def stored(lesson: Lesson) -> Any:
    status, body = await lesson.tutor_api.get(
        f"/api/v1/sessions/{lesson.session_id}/canvases/{STUDENT}"
    )
    assert status == 200, body
    return body["data"]


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
