"""The tutor's control center (/tutor) and students' whiteboards, each page in its own
context of a real headless Chromium, against a real hub process on loopback: strokes
reach the tiles, the tutor's marks reach the student, help goes raise -> acknowledge
-> resolve on both screens, Teach/Observe reaches the student, and the tutor's marks
made offline end on the hub with every tile equal to the hub's copy.

With ``HUB_TEST_SCREENSHOTS=<folder>`` the lesson test also writes the screenshots the
README shows (docs/screenshots/)."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from realtime.base.identity import Role
from tests.browser import CHROMIUM, console_problems, draw, need_chromium
from tests.processes import HubProcess, start_hub
from tests.support import Api, session_body

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

TUTOR = "tutor-1"
NAMES = {
    "s1": "Ada Lovelace",
    "s2": "Ben Okafor",
    "s3": "Chloé Martin",
    "s4": "Dev Patel",
    "s5": "Eva Novak",
}
LAPTOP = {"width": 1280, "height": 800}
# What a center plans for a student's lesson (the enrollment's exercise_content).
PLAN = [
    {"id": "fr-2", "title": "Fractions 2: equivalent fractions"},
    {
        "id": "fr-3",
        "title": "Fractions 3: adding unlike fractions",
        "instructions": "Work out 1/3 + 1/4 and show the common denominator.",
    },
]


@dataclass
class Classroom:
    """A hub process with one session of enrolled students, and a browser whose
    pages' consoles are watched."""

    hub: HubProcess
    session_id: str
    api: Api
    browser: Browser
    console: list[str] = field(default_factory=list)

    def watch(self, page: Page, who: str) -> None:
        page.on("console", lambda m: self.console.append(f"{m.type}: {who}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {who}: {e}"))

    async def open_tutor(self, context: BrowserContext, students: int) -> Page:
        page = await context.new_page()
        self.watch(page, "tutor")
        token = self.hub.token(TUTOR, Role.TUTOR, name="Tess Tutor")
        await page.goto(f"{self.hub.url}/tutor?session={self.session_id}#token={token}")
        await page.wait_for_function(
            """(n) => window.__control && window.__control.students().length === n
                && window.__control.students().every((id) => window.__control.tile(id).epoch)""",
            arg=students,
        )
        return page

    async def open_student(self, context: BrowserContext, student: str) -> Page:
        page = await context.new_page()
        self.watch(page, student)
        token = self.hub.token(student, Role.STUDENT, name=NAMES[student])
        await page.goto(f"{self.hub.url}/student?session={self.session_id}#token={token}")
        await page.wait_for_function("() => window.__board && window.__board.epoch")
        return page

    async def stored(self, student: str) -> Any:
        status, body = await self.api.get(f"/api/v1/sessions/{self.session_id}/canvases/{student}")
        assert status == 200, body
        return body["data"]

    def problems(self) -> list[str]:
        return console_problems(self.console)


async def classroom(tmp_path: Path, students: list[str]) -> AsyncIterator[Classroom]:
    need_chromium()
    hub = start_hub(tmp_path, f"control-{secrets.token_hex(16)}")
    http = aiohttp.ClientSession()
    try:
        api = Api(http, hub.url, hub.token(TUTOR, Role.TUTOR))
        status, created = await api.post("/api/v1/sessions", session_body(title="Maths club"))
        assert status == 201, created
        session_id = created["data"]["id"]
        for student in students:
            status, enrolled = await api.post(
                f"/api/v1/sessions/{session_id}/enrollments",
                {
                    "student_id": student,
                    "student_name": NAMES[student],
                    "exercise_content": {"exercises": PLAN},
                },
            )
            assert status == 201, enrolled
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                yield Classroom(hub, session_id, api, browser)
            finally:
                await browser.close()
    finally:
        await http.close()
        assert hub.stop() == 0, hub.log_tail()


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[Classroom]:
    async for room in classroom(tmp_path, ["s1", "s2"]):
        yield room


async def tile(page: Page, student: str) -> Any:
    return await page.evaluate("(id) => window.__control.tile(id)", student)


async def shown(page: Page) -> Any:
    return await page.evaluate("() => window.__board")


def entries(doc: dict[str, Any]) -> int:
    return len(doc.get("elements", {})) + len(doc.get("annotations", {}))


async def tile_shows(page: Page, student: str, count: int) -> None:
    """The tile's board has drawn `count` entries (elements and marks)."""
    board = page.locator(f'.tile[data-student="{student}"] svg[data-count="{count}"]')
    await board.wait_for(state="attached")  # also while another student is open large


async def test_strokes_reach_their_tiles_and_the_tutors_marks_reach_only_that_student(
    two: Classroom,
) -> None:
    tutor = await two.open_tutor(await two.browser.new_context(viewport=LAPTOP), 2)
    ada = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s1")
    ben = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s2")

    await draw(ada, 0.1, 0.1, board="#board")
    await draw(ada, 0.3, 0.5, board="#board")
    await draw(ben, 0.6, 0.2, board="#board")
    await tile_shows(tutor, "s1", 2)
    await tile_shows(tutor, "s2", 1)
    for student in ("s1", "s2"):
        hub_copy = await two.stored(student)
        view = await tile(tutor, student)
        assert view["document"] == hub_copy["doc"] and view["seq"] == hub_copy["seq"]
        assert view["rendered"] == entries(hub_copy["doc"])
    paths = tutor.locator('.tile[data-student="s1"] .elements path')
    assert await paths.count() == 2

    await tutor.get_by_role("button", name="Open Ada Lovelace's board large").click()
    await tutor.locator('#focus[data-student="s1"]').wait_for()
    await draw(tutor, 0.4, 0.4, board="#focus-board")
    await tutor.keyboard.press("e")  # the circle tool, by keyboard
    await tutor.locator("#focus-board").press("Enter")  # placed in the middle
    await ada.locator("#board .annotations > *").nth(1).wait_for()
    marks = (await shown(ada))["document"]["annotations"]
    assert sorted(v["type"] for v in marks.values()) == ["ellipse", "stroke"]
    assert marks == (await two.stored("s1"))["doc"]["annotations"]
    assert await ben.locator("#board .annotations > *").count() == 0
    assert (await shown(ben))["document"]["annotations"] == {}
    await tile_shows(tutor, "s1", 4)
    assert two.problems() == []


async def test_help_goes_raise_acknowledge_resolve_and_teach_reaches_the_student(
    two: Classroom,
) -> None:
    tutor = await two.open_tutor(await two.browser.new_context(viewport=LAPTOP), 2)
    ada = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s1")
    ben = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s2")

    await ben.get_by_label("What do you need?").fill("Is 3/4 bigger than 2/3?")
    await ben.get_by_role("button", name="Ask for help").click()
    # A reply being typed survives the redraw the next request brings.
    await tutor.get_by_label("Reply to Ben Okafor").fill("Yes: compare 9/12 with 8/12")
    await ada.get_by_label("What do you need?").fill("I am stuck on question 2")
    await ada.get_by_label("Priority").select_option("URGENT")
    await ada.get_by_role("button", name="Ask for help").click()
    await ada.locator("#help-status", has_text="Place in the queue: 1.").wait_for()
    # The hub's order: the urgent request first, though it came second.
    queue = tutor.locator("#help .help-item")
    await queue.nth(1).wait_for()
    assert await queue.nth(0).get_attribute("data-status") == "OPEN"
    assert "Ada Lovelace" in await queue.nth(0).inner_text()
    assert "urgent" in await queue.nth(0).inner_text()
    assert "Ben Okafor" in await queue.nth(1).inner_text()
    assert await tutor.locator('.tile[data-student="s1"] .help-badge').inner_text() == "Help #1"
    assert await tutor.get_by_label("Reply to Ben Okafor").input_value() == (
        "Yes: compare 9/12 with 8/12"
    )

    await tutor.get_by_label("Reply to Ada Lovelace").fill("Coming over now")
    await tutor.get_by_role("button", name="Acknowledge Ada Lovelace's request").click()
    await ada.locator("#help-status", has_text="Your tutor is on it: “Coming over now”").wait_for()
    await tutor.locator('#help .help-item[data-status="IN_PROGRESS"]').wait_for()
    assert await tutor.get_by_label("Reply to Ada Lovelace").input_value() == ""
    await tutor.get_by_role("button", name="Resolve Ada Lovelace's request").click()
    await ada.locator("#help-status", has_text="Resolved: Coming over now").wait_for()
    await queue.nth(1).wait_for(state="detached")
    assert "Ben Okafor" in await queue.nth(0).inner_text()
    assert await tutor.locator('.tile[data-student="s1"] .help-badge').is_hidden()
    await ben.locator("#help-status", has_text="Asked (normal)").wait_for()
    await tutor.get_by_role("button", name="Resolve Ben Okafor's request").click()
    await ben.locator("#help-status", has_text="Resolved: Yes: compare 9/12 with 8/12").wait_for()

    teach = tutor.get_by_role("button", name="Teach Ben Okafor (now observing)")
    await teach.focus()
    await tutor.keyboard.press("Enter")  # the toggle by keyboard
    await ben.locator('#mode[data-mode="TEACH"]').wait_for()
    await tutor.get_by_role("button", name="Teach Ben Okafor (now teaching)").wait_for()
    assert await ada.locator("#mode").get_attribute("data-mode") == "OBSERVE"
    assert two.problems() == []


async def test_marks_made_offline_reach_the_hub_and_every_tile_ends_in_its_state(
    two: Classroom,
) -> None:
    tutor_context = await two.browser.new_context(viewport=LAPTOP)
    tutor = await two.open_tutor(tutor_context, 2)
    ada = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s1")
    ben = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s2")
    await draw(ada, 0.1, 0.1, board="#board")
    await tile_shows(tutor, "s1", 1)
    await tutor.locator('.tile[data-student="s1"] .open').click()
    await draw(tutor, 0.5, 0.5, board="#focus-board")
    await tutor.wait_for_function("() => window.__control.pending() === 0")

    await tutor_context.set_offline(True)
    await tutor.locator('#status[data-status="offline"]').wait_for()
    await draw(tutor, 0.2, 0.6, board="#focus-board")  # mid-annotation, with no network
    await draw(tutor, 0.6, 0.7, board="#focus-board")
    # The students go on drawing; the tutor misses these relays.
    await draw(ada, 0.3, 0.3, board="#board")
    await draw(ben, 0.4, 0.4, board="#board")
    await ada.wait_for_function("() => window.__board.seq === 3 && !window.__board.pending")
    await ben.wait_for_function("() => window.__board.seq === 1 && !window.__board.pending")
    offline = await tile(tutor, "s1")
    assert offline["pending"] == 2 and len(offline["document"]["annotations"]) == 3
    assert len((await two.stored("s1"))["doc"]["annotations"]) == 1

    await tutor_context.set_offline(False)
    await tutor.locator('#status[data-status="online"]').wait_for()
    await tutor.wait_for_function("() => window.__control.pending() === 0")
    for student, page in (("s1", ada), ("s2", ben)):
        hub_copy = await two.stored(student)
        await tile_shows(tutor, student, entries(hub_copy["doc"]))
        view = await tile(tutor, student)
        assert view["document"] == hub_copy["doc"]
        assert (view["seq"], view["epoch"]) == (hub_copy["seq"], hub_copy["epoch"])
        await page.wait_for_function("(seq) => window.__board.seq === seq", arg=hub_copy["seq"])
        assert (await shown(page))["document"] == hub_copy["doc"]
    assert sorted(offline["document"]["annotations"]) == sorted(
        (await two.stored("s1"))["doc"]["annotations"]
    )
    assert (await two.stored("s1"))["seq"] == 5  # 2 strokes, 3 marks: nothing lost
    assert two.problems() == []


@pytest.fixture
async def five(tmp_path: Path) -> AsyncIterator[Classroom]:
    async for room in classroom(tmp_path, list(NAMES)):
        yield room


async def scribble(page: Page, selector: str, points: list[tuple[float, float]]) -> None:
    """A pen stroke through `points` (fractions of the board's size)."""
    box = await page.locator(selector).bounding_box()
    assert box is not None
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    await page.mouse.move(*at[0])
    await page.mouse.down()
    for x, y in at[1:]:
        await page.mouse.move(x, y, steps=3)
    await page.mouse.up()


def curve(cx: float, cy: float, r: float, turns: float = 1.0) -> list[tuple[float, float]]:
    steps = int(24 * turns)
    return [
        (
            cx + r * math.cos(2 * math.pi * turns * i / steps),
            cy + 0.6 * r * math.sin(2 * math.pi * turns * i / steps),
        )
        for i in range(steps + 1)
    ]


# Controls that overlap another or stick out of the window: the layout is broken.
CLUTTER = """() => {
  const controls = "button, input, select, textarea, summary, progress, a, h3";
  const shown = [...document.querySelectorAll(controls)]
    .filter((e) => e.checkVisibility() && e.getClientRects().length)
    .map((e) => [e, e.getBoundingClientRect()]);
  const problems = [];
  for (const [e, r] of shown) {
    if (r.left < 0 || r.right > innerWidth) problems.push(`outside: ${e.outerHTML.slice(0, 80)}`);
    const card = e.parentElement.closest(".tile, section, details, article, aside");
    const c = card?.getBoundingClientRect();
    if (c && (r.left < c.left - 1 || r.right > c.right + 1)) {
      const where = card.className || card.tagName;
      problems.push(`sticks out of its ${where}: ${e.outerHTML.slice(0, 80)}`);
    }
  }
  for (let i = 0; i < shown.length; i++) for (let j = i + 1; j < shown.length; j++) {
    const [a, p] = shown[i]; const [b, q] = shown[j];
    if (a.contains(b) || b.contains(a)) continue;
    const overlap = Math.min(p.right, q.right) - Math.max(p.left, q.left) > 1
      && Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 1;
    const what = (e) => e.outerHTML.slice(0, 60);
    if (overlap) problems.push(`overlap: ${what(a)} / ${what(b)}`);
  }
  return problems;
}"""


async def test_a_lesson_with_five_students_is_tidy_on_a_laptop_and_a_tablet(
    five: Classroom,
) -> None:
    """Five students, four drawing, two asking for help, a timer and an assignment: no
    control of either screen overlaps another or leaves the window at 1280x800 or on
    a tablet. With HUB_TEST_SCREENSHOTS=<folder>, the README's screenshots are written."""
    folder = os.environ.get("HUB_TEST_SCREENSHOTS")
    tutor_context = await five.browser.new_context(viewport=LAPTOP)
    tutor = await five.open_tutor(tutor_context, 5)
    students = {
        s: await five.open_student(await five.browser.new_context(viewport=LAPTOP), s)
        for s in ("s1", "s2", "s3", "s4")
    }
    ada = students["s1"]
    await scribble(ada, "#board", curve(0.3, 0.4, 0.12))
    await scribble(ada, "#board", [(0.15, 0.75), (0.3, 0.6), (0.45, 0.75), (0.6, 0.6)])
    await scribble(students["s2"], "#board", curve(0.5, 0.5, 0.2, 2.0))
    await scribble(students["s3"], "#board", [(0.1, 0.2), (0.5, 0.25), (0.8, 0.2), (0.8, 0.7)])
    await scribble(students["s4"], "#board", curve(0.4, 0.5, 0.25))
    await scribble(students["s4"], "#board", [(0.2, 0.2), (0.35, 0.3), (0.6, 0.25)])
    for page, message, priority in (
        (students["s3"], "How do I start question 4?", "NORMAL"),
        (ada, "Is my answer to 2b right?", "HIGH"),
    ):
        await page.get_by_label("What do you need?").fill(message)
        await page.get_by_label("Priority").select_option(priority)
        await page.get_by_role("button", name="Ask for help").click()
    await tutor.locator("#help .help-item").nth(1).wait_for()
    await tutor.get_by_role("button", name="Teach Ada Lovelace (now observing)").click()
    await tutor.get_by_label("Label").fill("Fractions practice")
    await tutor.get_by_label("Minutes").fill("15")
    await tutor.get_by_role("button", name="Start timer").click()
    await tutor.get_by_role("button", name="Acknowledge Ada Lovelace's request").click()

    await tutor.get_by_role("button", name="Open Ben Okafor's board large").click()
    await tutor.get_by_label("Exercise", exact=True).select_option(label="Type a title…")
    await tutor.get_by_label("Title").fill("Times tables: 7s")
    await tutor.get_by_role("button", name="Assign").click()
    await tutor.locator('.tile[data-student="s2"] .exercise', has_text="Times tables: 7s").wait_for(
        state="attached"
    )
    await tutor.get_by_role("button", name="Back to all students").click()
    await tutor.get_by_role("button", name="Open Ada Lovelace's board large").click()
    assert await tutor.get_by_label("Title").is_hidden()  # the plan comes first
    plan = tutor.get_by_label("Exercise", exact=True)
    await plan.select_option(label="Fractions 3: adding unlike fractions")
    await tutor.get_by_role("button", name="Assign").click()
    await tutor.locator("#assign-pick option", has_text="(current)").wait_for(state="attached")
    await scribble(tutor, "#focus-board", curve(0.3, 0.4, 0.17))
    await tutor.keyboard.press("t")
    await tutor.locator("#focus-text").fill("Check the denominator")
    box = await tutor.locator("#focus-board").bounding_box()
    assert box is not None
    await tutor.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.2 * box["height"])
    await ada.locator("#board .annotations > *").nth(1).wait_for()
    await ada.locator("#assignment", has_text="Fractions 3").wait_for()
    await ada.locator("#instructions", has_text="common denominator").wait_for()
    await ada.get_by_label("Progress").fill("40")
    await tutor.locator('.tile[data-student="s1"][data-progress="40"]').wait_for(state="attached")
    assert await tutor.evaluate(CLUTTER) == []
    if folder:
        await tutor.locator("#focus-h").scroll_into_view_if_needed()
        await tutor.screenshot(path=Path(folder) / "tutor-large-view.png")
    await tutor.get_by_role("button", name="Back to all students").click()
    for student in ("s1", "s2", "s3", "s4"):
        hub_copy = await five.stored(student)
        await tile_shows(tutor, student, entries(hub_copy["doc"]))
    await ada.locator("#help-status", has_text="Your tutor is on it.").wait_for()
    await ada.locator("#mode[data-mode=TEACH]").wait_for()
    assert await tutor.evaluate(CLUTTER) == []
    assert await ada.evaluate(CLUTTER) == []
    if folder:
        await tutor.screenshot(path=Path(folder) / "tutor-control-center.png")
        await ada.screenshot(path=Path(folder) / "student-whiteboard.png")

    tablet = await five.browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    on_tablet = await five.open_tutor(tablet, 5)
    await tile_shows(on_tablet, "s2", 1)
    # A page opened mid-lesson shows the progress reported before it (join ack).
    await on_tablet.locator('.tile[data-student="s1"][data-progress="40"]').wait_for(
        state="attached"
    )
    assert await on_tablet.evaluate(CLUTTER) == []
    if folder:
        await on_tablet.screenshot(path=Path(folder) / "tutor-tablet.png")
    assert five.problems() == []


def same_day_zone() -> str:
    """A time zone in which now and the fixture's start (now + 5 min) fall on one day."""
    now = datetime.now(UTC)
    return "UTC" if (now + timedelta(minutes=10)).date() == now.date() else "Etc/GMT+2"


async def test_my_day_lists_todays_session_with_its_open_help_and_opens_the_control_center(
    two: Classroom,
) -> None:
    ada = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s1")
    await ada.get_by_label("What do you need?").fill("I am stuck on question 2")
    await ada.get_by_role("button", name="Ask for help").click()
    await ada.locator("#help-status", has_text="Place in the queue: 1.").wait_for()

    context = await two.browser.new_context(viewport=LAPTOP, timezone_id=same_day_zone())
    page = await context.new_page()
    two.watch(page, "tutor")
    token = two.hub.token(TUTOR, Role.TUTOR, name="Tess Tutor")
    await page.goto(f"{two.hub.url}/tutor#token={token}")
    row = page.locator(f'#sessions .day-session[data-session="{two.session_id}"]')
    await row.wait_for()
    assert "Maths club" in await row.locator("a").inner_text()
    assert await row.locator(".open-help").get_attribute("data-count") == "1"
    assert await row.locator(".open-help").inner_text() == "1 open help"
    assert "Ada Lovelace" in await row.locator(".day-students").inner_text()
    assert "Ben Okafor" in await row.locator(".day-students").inner_text()
    help_items = page.locator("#day-help li")
    assert await help_items.count() == 1
    assert "Ada Lovelace" in await help_items.first.inner_text()
    assert "I am stuck on question 2" in await help_items.first.inner_text()

    await row.locator("a").click()
    await page.wait_for_function(
        "() => window.__control && window.__control.students().length === 2"
    )
    assert page.url.startswith(f"{two.hub.url}/tutor?session={two.session_id}")
    assert two.problems() == []


async def test_each_tile_and_the_large_view_link_to_the_students_replay_in_a_new_tab(
    two: Classroom,
) -> None:
    context = await two.browser.new_context(viewport=LAPTOP)
    tutor = await two.open_tutor(context, 2)
    token = tutor.url.split("#token=", 1)[1]  # the one the page was opened with

    def replay(student: str) -> str:
        return f"/replay?session={two.session_id}&student={student}#token={token}"

    for student, name in (("s1", "Ada Lovelace"), ("s2", "Ben Okafor")):
        link = tutor.locator(f'.tile[data-student="{student}"] a.replay')
        assert await link.get_attribute("href") == replay(student)
        assert await link.get_attribute("target") == "_blank"
        assert await link.get_attribute("aria-label") == f"Replay {name}'s session (new tab)"
    await tutor.get_by_role("button", name="Open Ben Okafor's board large").click()
    large = tutor.locator("#focus-replay")
    assert await large.get_attribute("href") == replay("s2")
    assert await large.get_attribute("target") == "_blank"
    async with context.expect_page() as opened:
        await large.click()
    page = await opened.value
    two.watch(page, "replay")
    await page.wait_for_load_state()
    assert page.url == f"{two.hub.url}{replay('s2')}"
    assert two.problems() == []


async def test_an_observer_gets_a_read_only_control_center(two: Classroom) -> None:
    """A supervisor joins as OBSERVER: the label shows, and every control the hub would
    refuse (mode, help moves, timers, announcements, marks, assignments, notes, ending,
    attendance) is hidden or disabled; a center admin may still mark attendance."""
    ada = await two.open_student(await two.browser.new_context(viewport=LAPTOP), "s1")
    await ada.get_by_label("What do you need?").fill("I am stuck on question 2")
    await ada.get_by_role("button", name="Ask for help").click()
    tutor = await two.open_tutor(await two.browser.new_context(viewport=LAPTOP), 2)
    assert await tutor.locator("#observing").is_hidden()
    assert await tutor.locator("#timer-form").is_visible()

    async def observe(sub: str, role: Role) -> Page:
        page = await (await two.browser.new_context(viewport=LAPTOP)).new_page()
        two.watch(page, sub)
        token = two.hub.token(sub, role, name="Sam Supervisor")
        await page.goto(f"{two.hub.url}/tutor?session={two.session_id}#token={token}")
        await page.wait_for_function(
            "() => window.__control && window.__control.students().length === 2"
        )
        return page

    watcher = await observe("sup-1", Role.SUPERVISOR)
    await watcher.locator("summary", has_text="Attendance").click()
    label = watcher.locator("#observing")
    assert await label.is_visible()
    assert await label.inner_text() == "Observing (read-only)"
    await watcher.locator("#help .help-item").first.wait_for()
    assert await watcher.locator("#help .help-actions button").count() == 2  # Acknowledge, Resolve
    for selector in (
        "#help .help-actions",
        "#help .reply",
        "#end",
        "#timer-form",
        "#announce-form",
        "#attendance-form button.mark",
        "#attendance-status",
    ):
        assert await watcher.locator(selector).first.is_hidden(), selector
    assert await watcher.locator("#attendance tr").count() == 2  # still shown, read-only
    for student in ("s1", "s2"):
        assert await watcher.locator(f'.tile[data-student="{student}"] button.mode').is_disabled()
    assert await watcher.locator('.tile[data-student="s1"] a.replay').is_visible()
    await watcher.get_by_role("button", name="Open Ada Lovelace's board large").click()
    for selector in ("#focus .toolbar", "#assign-form", "#note-text", "#note-form button"):
        assert await watcher.locator(selector).is_hidden(), selector
    assert await watcher.locator("#notes").count() == 1
    await scribble(watcher, "#focus-board", [(0.2, 0.2), (0.5, 0.5), (0.7, 0.3)])
    assert await watcher.evaluate("() => window.__control.pending()") == 0
    assert entries((await two.stored("s1"))["doc"]) == 0

    admin = await observe("admin-1", Role.CENTER_ADMIN)
    assert await admin.locator("#observing").is_visible()
    assert await admin.locator("#timer-form").is_hidden()
    await admin.locator("summary", has_text="Attendance").click()
    assert await admin.locator("#attendance-form button.mark").is_visible()
    assert two.problems() == []
