"""A join the session's end (or the student's removal) overtakes, and a join that
fails midway: either way the socket ends up out of the session, holding nothing.

The end is made to land inside the join, after its first read and before the
socket is in the session's rooms, by ending the session from the student's
presence hook. With the cluster topology the student is on another hub than the
REST call that ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from persistence.models import LiveSession
from persistence.repositories import EnrollmentRepository
from rest.keys import PRESENCE
from tests.conftest import Hub
from tests.support import Client, eventually
from tests.test_canvas import SESSIONS, new_session, patch, stroke


def during_arrive(
    hub: Hub, act: Callable[[], Awaitable[Any]], done: Callable[[], Awaitable[bool]]
) -> list[asyncio.Task[Any]]:
    """Start ``act`` once, inside the next student join's presence hook (on any hub),
    and let the join go on once ``act`` is done or ``done()`` (its write is in the
    database: a hub telling its sockets waits for the join to finish)."""
    started: list[asyncio.Task[Any]] = []
    for app in hub.apps:
        presence = app[PRESENCE]
        arrive = presence.arrive

        async def hooked(*args: Any, _arrive: Any = arrive) -> bool:
            if not started:
                started.append(asyncio.ensure_future(act()))
                await eventually(
                    lambda: started[0].done() or done(), what="the change in the database"
                )
            return bool(await _arrive(*args))

        presence.arrive = hooked
    return started


async def status_of(hub: Hub, session_id: str) -> str:
    async with hub.db() as db:
        session = await db.get(LiveSession, session_id)
        assert session is not None
        return session.status


async def enrolled(hub: Hub, session_id: str, student_id: str) -> bool:
    async with hub.db() as db:
        return await EnrollmentRepository(db).get(session_id, student_id) is not None


async def student_after_tutor(hub: Hub) -> tuple[str, Client, Client]:
    session_id = await new_session(hub, ("s1",))
    tutor = await hub.connect("tutor-1", "TUTOR")
    assert (await tutor.join(session_id))["ok"]
    student = await hub.connect("s1", "STUDENT")
    return session_id, tutor, student


async def assert_out_of_the_session(session_id: str, student: Client, *codes: str) -> None:
    """The socket may do nothing in the session."""
    ack = await patch(student, session_id, stroke("late"))
    assert ack.get("error", {}).get("code") in codes, ack
    ack = await student.call("help:request", {"session_id": session_id, "message": "stuck"})
    assert ack.get("error", {}).get("code") in codes, ack


async def test_a_join_the_end_overtakes_is_refused_and_leaves_the_socket_out(hub: Hub) -> None:
    session_id, tutor, student = await student_after_tutor(hub)

    async def end() -> None:
        status, _ = await hub.as_("tutor-1", "TUTOR").post(f"{SESSIONS}/{session_id}/end")
        assert status == 200

    async def ended() -> bool:
        return await status_of(hub, session_id) == "ENDED"

    acts = during_arrive(hub, end, ended)
    ack = await student.join(session_id)
    assert ack.get("error", {}).get("code") == "SESSION_ENDED", ack
    await acts[0]
    # SESSION_ENDED on a hub that saw the end; another knows only it is not joined.
    await assert_out_of_the_session(session_id, student, "SESSION_ENDED", "NOT_JOINED")
    status, rows = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session_id}/attendance")
    assert status == 200
    # Counted in while the join ran, and out again with its refusal.
    assert all(row["left_at"] is not None for row in rows["data"]), rows


async def test_a_join_the_removal_overtakes_is_refused_and_leaves_the_socket_out(
    hub: Hub,
) -> None:
    session_id, tutor, student = await student_after_tutor(hub)

    async def remove() -> None:
        path = f"{SESSIONS}/{session_id}/enrollments/s1"
        status, _ = await hub.as_("tutor-1", "TUTOR").delete(path)
        assert status in (200, 204)

    async def removed() -> bool:
        return not await enrolled(hub, session_id, "s1")

    acts = during_arrive(hub, remove, removed)
    ack = await student.join(session_id)
    assert ack.get("error", {}).get("code") == "FORBIDDEN", ack
    await acts[0]
    await assert_out_of_the_session(session_id, student, "NOT_JOINED")


@pytest.mark.parametrize("step", ["recorded", "announce_active"])
async def test_a_join_that_fails_midway_leaves_the_socket_out(hub: Hub, step: str) -> None:
    session_id, tutor, student = await student_after_tutor(hub)
    for app in hub.apps:
        presence = app[PRESENCE]

        async def broken(*args: Any) -> Any:
            raise RuntimeError("the presence store went away")

        setattr(presence, step, broken)
    ack = await student.join(session_id)
    assert ack.get("error", {}).get("code") == "INTERNAL", ack
    await assert_out_of_the_session(session_id, student, "NOT_JOINED")
