"""What the browser tests share: Debian's Chromium driven by Playwright, a watched
console, and the ``lesson`` fixture (a hub process with one session, its tutor on a
stock python-socketio client and one enrolled student), which a test module takes with
``from tests.browser import lesson``."""

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
from tests.support import Api, Client, session_body

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
