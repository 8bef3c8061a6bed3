"""A stock JavaScript socket.io-client 4.x against a real hub process.

The hub runs as ``python -m realtime serve`` in a subprocess (SQLite in the
test's tmp dir, an HS256 secret of the test's own); ``tests/js/roles.mjs``
connects, joins and leaves as each role and prints what it saw, and this
module judges it.

Without ``node`` (or when ``npm ci`` cannot install ``tests/js``) the test
skips with the reason; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token
from tests.conftest import JS_DIR, NPM_CI_TIMEOUT_S
from tests.processes import HUB_STOP_TIMEOUT_S, ROOT, HubProcess
from tests.support import session_body

ROLES_SCRIPT = JS_DIR / "roles.mjs"
SESSIONS = "/api/v1/sessions"

NODE_TIMEOUT_S = 30.0  # the script gives up by itself after 20 s


async def run_node(node: str, script: Path, scenario: dict[str, Any]) -> dict[str, Any]:
    """Run ``node script '<scenario json>'``; its stdout parsed as one JSON object."""
    proc = await asyncio.create_subprocess_exec(
        node,
        str(script),
        json.dumps(scenario),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        pytest.fail(f"{script.name} did not finish within {NODE_TIMEOUT_S} s")
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    assert proc.returncode == 0, (
        f"{script.name} exited {proc.returncode}\nstdout: {stdout}\nstderr: {stderr}"
    )
    observed: dict[str, Any] = json.loads(stdout)
    return observed


async def create_session(hub: HubProcess, tutor_token: str, students: list[str]) -> str:
    headers = {"Authorization": f"Bearer {tutor_token}"}
    async with aiohttp.ClientSession(hub.url, headers=headers) as http:
        async with http.post(SESSIONS, json=session_body("tutor-1")) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        session_id: str = created["data"]["id"]
        for student in students:
            body = {"student_id": student, "student_name": f"Student {student}"}
            async with http.post(f"{SESSIONS}/{session_id}/enrollments", json=body) as resp:
                enrolled = await resp.json()
                assert resp.status == 201, enrolled
    return session_id


def refusal(code: str, message: str) -> dict[str, Any]:
    return {"connected": False, "error_message": message, "code": code, "message": message}


def join_error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


# The sockets roles.mjs keeps open until the end, by scenario token name.
SOCKET_NAMES = (
    "tutor",
    "supervisor",
    "student",
    "stranger_student",
    "parent",
    "other_center_tutor",
)
PRESENCE_KEYS = {"session_id", "student_id", "status", "since", "session_time_s", "total_time_s"}


@pytest.mark.slow
@pytest.mark.timeout(NPM_CI_TIMEOUT_S + 60)
async def test_stock_js_client_connects_joins_and_leaves_as_each_role(
    node: str, hub_process: HubProcess
) -> None:
    hub = hub_process
    tutor_token = hub.token("tutor-1", Role.TUTOR, name="Ms Tutor")
    session_id = await create_session(hub, tutor_token, ["s1", "s2"])
    forged = mint_token(
        Settings(jwt_secret="another-secret-that-is-long-enough-to-be-valid"),
        sub="tutor-1",
        role=Role.TUTOR,
        center="c1",
    )
    tokens = {
        "bad_signature": forged,
        # Well past the hub's default 30 s leeway.
        "expired": hub.token("tutor-1", Role.TUTOR, ttl_s=-3600),
        "tutor": tutor_token,
        "supervisor": hub.token("sup-1", Role.SUPERVISOR),
        "student": hub.token("s1", Role.STUDENT),
        "stranger_student": hub.token("s9", Role.STUDENT),
        "parent": hub.token("p1", Role.PARENT),
        "other_center_tutor": hub.token("tutor-1", Role.TUTOR, center="c2"),
    }

    seen = await run_node(
        node, ROLES_SCRIPT, {"url": hub.url, "session_id": session_id, "tokens": tokens}
    )
    context = f"observations: {json.dumps(seen, indent=1)}\nhub log:\n{hub.log_tail()}"
    assert "fatal" not in seen, context
    assert seen["client_version"].startswith("4."), context

    # Connect refusals carry {code, message} as connect_error's err.data.
    assert seen["refusals"] == {
        "no_token": refusal("UNAUTHORIZED", "a token is required"),
        "bad_signature": refusal("UNAUTHORIZED", "invalid token: Signature verification failed"),
        "expired": refusal("TOKEN_EXPIRED", "token has expired"),
    }, context

    joins = seen["joins"]
    tutor = joins["tutor"]
    assert tutor["ok"] is True, context
    assert tutor["you"]["user_id"] == "tutor-1" and tutor["you"]["name"] == "Ms Tutor"
    assert tutor["you"]["role"] == "TUTOR"
    assert tutor["you"]["expires_at"] > time.time()
    assert tutor["session"]["id"] == session_id
    assert tutor["session"]["status"] == "LIVE" and tutor["session"]["started_at"]
    assert [(s["student_id"], s["student_name"], s["status"]) for s in tutor["students"]] == [
        ("s1", "Student s1", "offline"),
        ("s2", "Student s2", "offline"),
    ], context
    empty = {"elements": {}, "annotations": {}, "meta": {}}
    assert {k: (v["seq"], v["doc"]) for k, v in tutor["canvases"].items()} == {
        "s1": (0, empty),
        "s2": (0, empty),
    }
    assert (tutor["help"], tutor["timers"]) == ([], [])

    supervisor = joins["supervisor"]
    assert supervisor["ok"] is True, context
    assert supervisor["you"]["role"] == "OBSERVER" and supervisor["you"]["user_id"] == "sup-1"
    assert [s["student_id"] for s in supervisor["students"]] == ["s1", "s2"]

    student = joins["student"]
    assert student["ok"] is True, context
    assert student["you"]["role"] == "STUDENT" and student["you"]["user_id"] == "s1"
    assert [(s["student_id"], s["status"]) for s in student["students"]] == [("s1", "active")]
    assert "s2" not in json.dumps(student), context

    assert joins["stranger_student"] == join_error(
        "FORBIDDEN", "student is not enrolled in this session"
    ), context
    assert joins["parent"] == join_error("FORBIDDEN", "role PARENT has no live access"), context
    assert joins["other_center_tutor"] == join_error(
        "NOT_FOUND", f"session {session_id!r} not found"
    ), context

    assert seen["leave"] == {"ok": True}, context
    assert seen["leave_again"] == join_error(
        "NOT_JOINED", f"not joined to session {session_id!r}"
    ), context

    # Staff hear the student come online on join and go offline on leave.
    for staff in ("tutor", "supervisor"):
        updates = seen["presence"][staff]
        assert [(u["session_id"], u["student_id"], u["status"]) for u in updates] == [
            (session_id, "s1", "active"),
            (session_id, "s1", "offline"),
        ], context
        assert all(set(u) == PRESENCE_KEYS for u in updates), context
        online, offline = updates
        assert online["session_time_s"] == 0 and online["total_time_s"] == 0
        assert online["since"] <= offline["since"]
        assert offline["total_time_s"] >= 0 and offline["session_time_s"] >= 0

    # Staff saw the student's attendance: present on joining, then the time they left.
    for staff in ("tutor", "supervisor"):
        marks = seen["attendance"][staff]
        assert [(m["student_id"], m["status"]) for m in marks] == [("s1", "PRESENT")] * 2, context
        assert marks[0]["left_at"] is None and marks[1]["left_at"], context

    # Nobody heard anything else: not the student, nor the refused joiners.
    assert seen["other_events"] == {name: [] for name in SOCKET_NAMES}, context
    assert all(seen["still_connected"].values()), context

    started = time.monotonic()
    code = await asyncio.to_thread(hub.stop)
    assert code == 0, (
        f"the hub exited with {code} on SIGTERM "
        f"({time.monotonic() - started:.1f} s; None means it outlived "
        f"{HUB_STOP_TIMEOUT_S} s):\n{hub.log_tail()}"
    )
