"""The pages keep their sign-in alive (docs/protocol.md, Browser pages): in a real
headless Chromium against a development hub process whose tokens expire on the
second (no leeway), a student page signed in through the development sign-in mints
a new token before its 20-second token ends, sends ``auth:refresh`` and stays
connected past the original expiry; a page launched with a platform's token (no
way to get another) says when the session will end, then is closed."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright

from realtime.base.config import DEV_JWT_SECRET
from realtime.base.identity import Role
from tests.browser import CHROMIUM, console_problems, draw, need_chromium
from tests.processes import start_hub
from tests.support import Api, session_body

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

TTL_S = 20


async def test_a_dev_signed_page_refreshes_its_token_and_a_platform_page_is_told(
    tmp_path: Path,
) -> None:
    need_chromium()
    # The development secret (so POST /api/v1/dev/token exists) with no leeway: a
    # token is refused the second its exp passes.
    hub = start_hub(tmp_path, DEV_JWT_SECRET, settings={"HUB_JWT_LEEWAY_S": "0"})
    console: list[str] = []
    http = aiohttp.ClientSession()
    try:
        tutor_api = Api(http, hub.url, hub.token("tutor-1", Role.TUTOR))
        status, created = await tutor_api.post("/api/v1/sessions", session_body())
        assert status == 201, created
        session_id = created["data"]["id"]
        for student in ("s1", "s2"):
            status, body = await tutor_api.post(
                f"/api/v1/sessions/{session_id}/enrollments", {"student_id": student}
            )
            assert status == 201, body

        # Short-lived tokens signed with the development secret, as the sign-in would
        # mint them (it asks for at least a minute; the page's refresh does).
        expires_at = int(time.time()) + TTL_S
        dev = hub.token("s1", Role.STUDENT, ttl_s=TTL_S)
        platform = hub.token("s2", Role.STUDENT, ttl_s=TTL_S)  # opened without the mark
        base = f"{hub.url}/student?session={session_id}"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                pages = {}
                for name, url in (
                    ("dev", f"{base}#token={dev}&signin=dev"),
                    ("platform", f"{base}#token={platform}"),
                ):
                    context = await browser.new_context(viewport={"width": 1024, "height": 768})
                    page = await context.new_page()
                    page.on("console", lambda m, n=name: console.append(f"{m.type}: {n}: {m.text}"))
                    page.on("pageerror", lambda e, n=name: console.append(f"pageerror: {n}: {e}"))
                    await page.goto(url)
                    await page.locator('#status[data-status="online"]').wait_for()
                    pages[name] = page
                dev_page, platform_page = pages["dev"], pages["platform"]

                # At 80% of its life the platform page says when the session ends.
                notice = platform_page.locator("#session-expiry")
                await notice.wait_for(state="visible", timeout=(TTL_S + 10) * 1000)
                assert "will end in 1 minute" in (await notice.text_content() or "")
                assert "reopen this lesson from your platform" in (
                    await notice.text_content() or ""
                )
                assert time.time() < expires_at  # told before the end
                assert await dev_page.locator("#session-expiry").count() == 0

                # Past the original expiry: the platform page was closed by the hub, the
                # dev page still works on its refreshed token.
                await platform_page.locator('#status[data-status="offline"]').wait_for(
                    timeout=(expires_at - time.time() + 15) * 1000
                )
                while time.time() < expires_at + 3:
                    await dev_page.wait_for_timeout(500)
                assert await dev_page.locator("#status").get_attribute("data-status") == "online"
                await draw(dev_page, 0.2, 0.2)
                await dev_page.wait_for_function(
                    "() => window.__board.seq === 1 && !window.__board.pending"
                )
                status, canvas = await tutor_api.get(f"/api/v1/sessions/{session_id}/canvases/s1")
                assert status == 200 and canvas["data"]["seq"] == 1, canvas
                assert await dev_page.locator("#status").get_attribute("data-status") == "online"
            finally:
                await browser.close()
    finally:
        await http.close()
        assert hub.stop() == 0, hub.log_tail()
    assert console_problems(console) == [], console
