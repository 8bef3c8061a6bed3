"""The README's first lesson, as a newcomer would give it, in a real headless Chromium
against a hub on the development secret (what `make run` starts): on `/` the tutor
signs in, starts a lesson with s1 and s2 and opens its control center; each student
signs in on `/` in a window of their own and opens the lesson from their list; a
stroke reaches the tutor's tile, an exercise from the lesson's plan and a reply to a
help request reach the students."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from realtime.base.config import DEV_JWT_SECRET
from tests.browser import CHROMIUM, console_problems, draw, need_chromium
from tests.processes import HubProcess, start_hub

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LAPTOP = {"width": 1280, "height": 800}
# The control center holds both students' boards.
READY = """() => window.__control && window.__control.students().length === 2
    && window.__control.students().every((id) => window.__control.tile(id).epoch)"""


async def signed_in(
    browser: Browser, hub: HubProcess, console: list[str], role: str, sub: str
) -> Page:
    """A new window on `/`, signed in through the development form."""
    page = await (await browser.new_context(viewport=LAPTOP)).new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {sub}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {sub}: {e}"))
    await page.goto(f"{hub.url}/")
    await page.get_by_label("Role").select_option(role)
    await page.get_by_label("User id").fill(sub)
    await page.get_by_role("button", name="Sign in").click()
    return page


async def test_a_newcomer_signs_in_three_windows_and_teaches_a_short_lesson(
    tmp_path: Path,
) -> None:
    need_chromium()
    hub = start_hub(tmp_path, DEV_JWT_SECRET)
    console: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                tutor = await signed_in(browser, hub, console, "TUTOR", "tutor-1")
                await tutor.get_by_text("No sessions yet.").wait_for()
                await tutor.get_by_label("Student ids (comma separated)").fill("s1, s2")
                await tutor.get_by_role("button", name="Create the session").click()
                await tutor.get_by_role("link", name="Fractions").click()
                await tutor.wait_for_function(READY)

                students = {}
                for sub in ("s1", "s2"):
                    page = await signed_in(browser, hub, console, "STUDENT", sub)
                    await page.get_by_role("link", name="Fractions").click()
                    await page.wait_for_function("() => window.__board && window.__board.epoch")
                    students[sub] = page

                await draw(students["s1"], 0.2, 0.3)
                await tutor.locator('.tile[data-student="s1"] svg[data-count="1"]').wait_for()
                await tutor.get_by_role("button", name="Open s1's board large").click()
                await tutor.get_by_label("Exercise", exact=True).select_option(
                    label="Fractions 2: equivalent fractions"
                )
                await tutor.get_by_role("button", name="Assign").click()
                await students["s1"].locator("#assignment", has_text="Fractions 2").wait_for()
                await students["s1"].locator("#instructions", has_text="2/4").wait_for()

                s2 = students["s2"]
                await s2.get_by_label("What do you need?").fill("Where do I start?")
                await s2.get_by_role("button", name="Ask for help").click()
                await tutor.get_by_label("Reply to s2").fill("Draw the two fractions first")
                await tutor.get_by_role("button", name="Acknowledge s2's request").click()
                await s2.locator("#help-status", has_text="Draw the two fractions first").wait_for()
            finally:
                await browser.close()
    finally:
        assert hub.stop() == 0, hub.log_tail()
    assert console_problems(console) == [], console
