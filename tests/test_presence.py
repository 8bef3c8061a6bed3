"""Presence: idle read from the work itself, client pings, the roster's status."""

from __future__ import annotations

import itertools
import time
from typing import Any

from rest.keys import PRESENCE
from tests.conftest import Hub, HubFactory
from tests.support import Client, eventually, session_body
from tests.test_canvas import live_session, patch, stroke
from tests.test_help import FakeClock


def statuses(tutor: Client, student_id: str = "s1") -> list[str]:
    return [u["status"] for u in tutor.events("presence:update") if u["student_id"] == student_id]


async def fast_hub(make_hub: HubFactory, clock: FakeClock, **settings: Any) -> Any:
    return await make_hub(clock=clock, presence_sweep_s=0.02, **settings)


async def heralds(hub: Hub, session_id: str) -> list[Client]:
    """A tutor connection in the session on each hub (new clients go to the hubs in turn)."""
    joined = [await hub.connect("tutor-1", "TUTOR") for _ in hub.apps]
    assert {c.url for c in joined} == set(hub.urls or [hub.url])
    for herald in joined:
        assert (await herald.join(session_id))["ok"]
    return joined


_barriers = itertools.count()


async def swept(hub: Hub, tutor: Client, on_each_hub: list[Client], session_id: str) -> None:
    """Every hub has run two whole presence sweeps since now, and the tutor has heard
    everything they announced in them.

    Two: a sweep under way may have read the clock before the test moved it. A
    student goes idle in a sweep of their own hub, and offline in one of whichever
    hub leads the sweeps: so each hub then sends the tutor an announcement, which
    leaves that hub the way its presence updates do (in a cluster, in order through
    its one Redis publisher) and so arrives after them.
    """
    hubs = [app[PRESENCE] for app in hub.apps]
    start = [h.sweeps_done for h in hubs]
    await eventually(
        lambda: all(h.sweeps_done >= n + 2 for h, n in zip(hubs, start, strict=True)),
        what="two more presence sweeps on every hub",
    )
    texts = [f"barrier {next(_barriers)}" for _ in on_each_hub]
    for herald, text in zip(on_each_hub, texts, strict=True):
        ack = await herald.call("announcement:send", {"session_id": session_id, "text": text})
        assert ack == {"ok": True}, ack
    await eventually(
        lambda: set(texts) <= {a["text"] for a in tutor.events("announcement")},
        what="each hub's announcement at the tutor",
    )


async def test_idle_from_inactivity_and_back_to_active_by_drawing(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await fast_hub(make_hub, clock, idle_after_s=60)
    session_id, tutor, students = await live_session(hub, ("s1", "s2"))
    on_each_hub = await heralds(hub, session_id)
    await eventually(lambda: statuses(tutor) == ["active"], what="s1 online")
    clock.advance(59)
    await patch(students["s2"], session_id, stroke("keeps-s2-busy"))
    clock.advance(2)  # s1: 61 s without activity; s2: 2 s
    await eventually(lambda: statuses(tutor) == ["active", "idle"], what="s1 idle")
    idle = next(u for u in tutor.events("presence:update") if u["status"] == "idle")
    assert idle["student_id"] == "s1" and idle["session_time_s"] == 61
    assert statuses(tutor, "s2") == ["active"]
    # The roster a tutor joins with says idle too.
    again = await hub.connect("tutor-1", "TUTOR")
    roster = {s["student_id"]: s["status"] for s in (await again.join(session_id))["students"]}
    assert roster == {"s1": "idle", "s2": "active"}
    assert (await patch(students["s1"], session_id, stroke("a")))["ok"]
    await eventually(lambda: statuses(tutor) == ["active", "idle", "active"], what="active again")
    # Announced once each: more sweeps over the same state add nothing.
    await swept(hub, tutor, on_each_hub, session_id)
    assert statuses(tutor) == ["active", "idle", "active"]


async def test_a_session_sets_its_own_idle_threshold(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await fast_hub(make_hub, clock, idle_after_s=600)
    tutor_api = hub.as_("tutor-1", "TUTOR")

    status, created = await tutor_api.post("/api/v1/sessions", session_body(idle_after_s=10))
    assert status == 201 and created["data"]["idle_after_s"] == 10
    session_id = created["data"]["id"]
    await tutor_api.post(f"/api/v1/sessions/{session_id}/enrollments", {"student_id": "s1"})
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    student = await hub.connect("s1", "STUDENT")
    await student.join(session_id)
    on_each_hub = await heralds(hub, session_id)
    clock.advance(11)
    await eventually(lambda: statuses(tutor) == ["active", "idle"], what="idle after 10 s")
    status, got = await tutor_api.patch(f"/api/v1/sessions/{session_id}", {"idle_after_s": 20})
    assert status == 200 and got["data"]["idle_after_s"] == 20
    # The new threshold applies to the live session at once.
    await student.call("presence:ping", {"session_id": session_id, "state": "active"})
    clock.advance(15)
    # Under the old 10 s threshold s1 would go idle now.
    await swept(hub, tutor, on_each_hub, session_id)
    assert statuses(tutor) == ["active", "idle", "active"]
    clock.advance(6)
    await eventually(lambda: statuses(tutor) == ["active", "idle", "active", "idle"], what="idle")
    status, got = await tutor_api.patch(f"/api/v1/sessions/{session_id}", {"idle_after_s": 1})
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")


async def test_client_pings_report_idle_and_unfocused(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await fast_hub(make_hub, clock)
    session_id, tutor, students = await live_session(hub, ("s1",))
    s1 = students["s1"]
    ping = {"session_id": session_id}
    assert await s1.call("presence:ping", {**ping, "state": "idle"}) == {
        "ok": True,
        "status": "idle",
    }
    assert await s1.call("presence:ping", {**ping, "state": "active"}) == {
        "ok": True,
        "status": "active",
    }
    ack = await s1.call("presence:ping", {**ping, "state": "active", "focused": False})
    assert ack["status"] == "idle"
    ack = await s1.call("presence:ping", {**ping, "state": "active", "focused": True})
    assert ack["status"] == "active"
    await eventually(
        lambda: statuses(tutor) == ["active", "idle", "active", "idle", "active"],
        what="each change announced",
    )
    assert (await s1.call("presence:ping", {**ping, "state": "asleep"}))["error"]["code"] == (
        "VALIDATION_ERROR"
    )
    ack = await tutor.call("presence:ping", {**ping, "state": "idle"})
    assert ack["error"]["code"] == "FORBIDDEN"


async def test_progress_counts_as_activity(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await fast_hub(make_hub, clock, idle_after_s=30)
    session_id, tutor, students = await live_session(hub, ("s1",))
    clock.advance(31)
    await eventually(lambda: statuses(tutor) == ["active", "idle"], what="idle")
    await students["s1"].call(
        "exercise:progress", {"session_id": session_id, "exercise_id": "e1", "progress_pct": 10}
    )
    await eventually(lambda: statuses(tutor) == ["active", "idle", "active"], what="active")


async def test_back_within_the_grace_period_is_one_stretch(make_hub: HubFactory) -> None:
    clock = FakeClock()
    grace_s = 0.3
    hub = await fast_hub(make_hub, clock, presence_grace_s=grace_s)
    session_id, tutor, students = await live_session(hub, ("s1",))
    on_each_hub = await heralds(hub, session_id)
    await eventually(lambda: statuses(tutor) == ["active"], what="online")
    # The network flaps: gone and back within the grace period.
    await students["s1"].sio.disconnect()
    clock.advance(5)
    back = await hub.connect("s1", "STUDENT")
    assert (await back.join(session_id))["ok"]
    # The grace period runs on the wall clock from the hub's handling of the
    # disconnect, which came before this join's answer: once it is over, the sweeps
    # would mark s1 offline.
    grace_over = time.time() + grace_s
    await eventually(lambda: time.time() > grace_over, what="the end of the grace period")
    await swept(hub, tutor, on_each_hub, session_id)
    assert statuses(tutor) == ["active"]
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"/api/v1/sessions/{session_id}/attendance")
    assert got["data"][0]["left_at"] is None
    # Gone for good: offline after the grace period, at the time it left.
    clock.advance(10)
    left_at = clock.now
    await back.sio.disconnect()
    await eventually(lambda: statuses(tutor) == ["active", "offline"], what="offline")
    offline = tutor.events("presence:update")[-1]
    assert offline["since"] == left_at.isoformat().replace("+00:00", "Z")
    assert offline["total_time_s"] == 15  # one stretch of 5 + 10 s


async def test_stopping_closes_the_stretches_of_students_in_their_grace_period(
    make_hub: HubFactory,
) -> None:
    """What stop_grace_timers does at shutdown, now in one transaction for everyone
    (one transaction and two announcements per student made a hub with thousands in
    their grace period outlive its stop timeout)."""
    clock = FakeClock()
    hub = await fast_hub(make_hub, clock, presence_grace_s=60)
    session_id, tutor, students = await live_session(hub, ("s1", "s2"))
    await students["s1"].sio.disconnect()
    await students["s2"].sio.disconnect()
    clock.advance(5)
    attendance = f"/api/v1/sessions/{session_id}/attendance"
    status, got = await hub.as_("tutor-1", "TUTOR").get(attendance)
    assert [row["left_at"] for row in got["data"]] == [None, None]  # still in grace
    await hub.app[PRESENCE].stop_grace_timers()
    status, got = await hub.as_("tutor-1", "TUTOR").get(attendance)
    assert status == 200
    stopped_at = clock.now.isoformat().replace("+00:00", "Z")
    assert [row["left_at"] for row in got["data"]] == [stopped_at, stopped_at]
