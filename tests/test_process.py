"""The hub as operators run it: ``python -m realtime serve`` in a process of its own."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from realtime.base.identity import Role
from tests.processes import HubProcess
from tests.support import Client, eventually, migrations_head, session_body


@pytest.mark.slow
async def test_sigterm_tells_connected_clients_and_exits_cleanly(hub_process: HubProcess) -> None:
    hub = hub_process
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{hub.url}/api/v1/sessions",
            json=session_body("tutor-1"),
            headers={"Authorization": f"Bearer {hub.token('tutor-1', Role.TUTOR)}"},
        ) as resp:
            assert resp.status == 201
            session_id = (await resp.json())["data"]["id"]
    clients = [Client() for _ in range(3)]
    for client in clients:
        await client.connect(hub.url, hub.token("tutor-1", Role.TUTOR))
        assert (await client.join(session_id))["ok"] is True

    started = time.monotonic()
    hub.process.terminate()
    for client in clients:
        await asyncio.wait_for(client.disconnected.wait(), timeout=10)
        assert client.events("hub:closing") == [
            {"code": "SHUTTING_DOWN", "message": "hub is shutting down; reconnect"}
        ]
    await eventually(lambda: hub.process.poll() is not None, within=15, what="the hub to exit")
    assert hub.process.returncode == 0, hub.log_tail()
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"shutdown took {elapsed:.1f} s"
    assert "Traceback" not in hub.log_tail()
    hub.stop()


@pytest.mark.slow
async def test_served_hub_is_ready_and_migrated(hub_process: HubProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hub_process.url}/readyz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok", "checks": {"database": "ok"}}
    assert f"database schema is at {migrations_head()}" in hub_process.log_tail()
