"""No acked patch is lost when the hub process is killed (SIGKILL) mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from realtime.base.identity import Role
from tests.conftest import Database
from tests.processes import HubProcess, start_hub
from tests.support import Client, eventually, session_body

STUDENTS = ("s1", "s2", "s3")


def hub_settings(database: Database) -> dict[str, str]:
    settings = {"HUB_DATABASE_URL": database.url, "HUB_SOCKET_EVENTS_PER_S": "1000"}
    if database.schema is not None:
        settings["HUB_DATABASE_SCHEMA"] = database.schema
    return settings


async def rest(hub: HubProcess, method: str, path: str, token: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, hub.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status < 300, await resp.text()
            return (await resp.json())["data"]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_every_acked_patch_survives_sigkill(database: Database, tmp_path: Path) -> None:
    secret = f"durability-test-secret-{secrets.token_hex(16)}"
    hub = start_hub(tmp_path, secret, settings=hub_settings(database), name="first")
    tutor_token = hub.token("tutor-1", Role.TUTOR)
    session = await rest(hub, "POST", "/api/v1/sessions", tutor_token, session_body("tutor-1"))
    session_id = session["id"]
    for student in STUDENTS:
        await rest(
            hub,
            "POST",
            f"/api/v1/sessions/{session_id}/enrollments",
            tutor_token,
            {"student_id": student},
        )

    acked: dict[str, dict[int, str]] = {s: {} for s in STUDENTS}
    clients: list[Client] = []
    killed = asyncio.Event()

    async def draw(student: str) -> None:
        client = await Client().connect(hub.url, hub.token(student, Role.STUDENT))
        clients.append(client)
        assert (await client.join(session_id))["ok"]
        n = 0
        while not killed.is_set():
            element = f"{student}-{n}"
            ops = [
                {
                    "op": "add",
                    "path": f"/elements/{element}",
                    "value": {"type": "stroke", "points": [[n, n], [n + 1, n + 2]]},
                }
            ]
            try:
                ack = await client.sio.call(
                    "canvas:patch", {"session_id": session_id, "ops": ops}, timeout=2
                )
            except Exception:
                return  # the hub died under us: this patch was never acked
            if not ack.get("ok"):
                return
            acked[student][ack["seq"]] = element
            n += 1

    drawers = [asyncio.create_task(draw(s)) for s in STUDENTS]
    await eventually(
        lambda: all(len(a) >= 30 for a in acked.values()), within=30, what="patches acked"
    )
    hub.process.send_signal(signal.SIGKILL)
    killed.set()
    assert hub.stop() == -signal.SIGKILL
    await asyncio.wait_for(asyncio.gather(*drawers), timeout=10)
    for client in clients:
        with contextlib.suppress(Exception):
            await client.sio.disconnect()

    second = start_hub(tmp_path, secret, settings=hub_settings(database), name="second")
    try:
        for student in STUDENTS:
            canvas = await rest(
                second, "GET", f"/api/v1/sessions/{session_id}/canvases/{student}", tutor_token
            )
            seqs = sorted(acked[student])
            assert seqs == list(range(1, len(seqs) + 1))
            assert canvas["seq"] >= seqs[-1], (student, canvas["seq"], seqs[-1])
            missing = [e for e in acked[student].values() if e not in canvas["doc"]["elements"]]
            assert missing == [], f"{student} lost acked patches {missing}"
        # The stream carries on after the restart, from the stored seq.
        client = await Client().connect(second.url, second.token("s1", Role.STUDENT))
        await client.join(session_id)
        ack = await client.call(
            "canvas:patch",
            {
                "session_id": session_id,
                "ops": [{"op": "add", "path": "/elements/after", "value": {"type": "stroke"}}],
            },
        )
        stored = await rest(
            second, "GET", f"/api/v1/sessions/{session_id}/canvases/s1", tutor_token
        )
        assert ack == {"ok": True, "seq": stored["seq"]}
        await client.sio.disconnect()
    finally:
        assert second.stop() == 0, second.log_tail()
