"""Timers and alerts: tutor countdowns, the hub's own warnings, each fired once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rest.keys import METRICS
from tests.conftest import Hub, HubFactory
from tests.support import Client, eventually, session_body
from tests.test_canvas import live_session
from tests.test_help import FakeClock


def alerts(client: Client, kind: str | None = None) -> list[dict[str, Any]]:
    """Alerts of one kind, or (kind None) those of tutor timers."""
    return [
        a
        for a in client.events("timer:alert")
        if a["kind"] == kind or (kind is None and a["kind"].startswith("TIMER_"))
    ]


async def timed_hub(make_hub: HubFactory, clock: FakeClock, **settings: Any) -> Hub:
    return await make_hub(clock=clock, presence_sweep_s=0.02, **settings)


async def test_a_session_timer_warns_then_ends_once_for_everyone(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await timed_hub(make_hub, clock)
    session_id, tutor, students = await live_session(hub)
    ack = await tutor.call(
        "timer:start",
        {"session_id": session_id, "label": "Quiz", "duration_s": 60, "warn_before_s": 10},
    )
    assert ack["ok"] is True
    timer = ack["timer"]
    assert timer["label"] == "Quiz" and timer["student_id"] is None and timer["warn_at"]
    everyone = (tutor, *students.values())
    for client in everyone:
        await eventually(lambda c=client: c.events("timer:started"), what="timer:started")
    joined = await students["s1"].join(session_id)
    assert [t["id"] for t in joined["timers"]] == [timer["id"]]
    clock.advance(51)
    for client in everyone:
        await eventually(lambda c=client: alerts(c, "TIMER_WARNING"), what="warning")
    clock.advance(10)
    for client in everyone:
        got = await eventually(lambda c=client: alerts(c, "TIMER_END"), what="end")
        assert got == [
            {
                "session_id": session_id,
                "timer_id": timer["id"],
                "kind": "TIMER_END",
                "label": "Quiz",
                "student_id": None,
            }
        ]
    clock.advance(600)
    await tutor.call("timer:start", {"session_id": session_id, "label": "barrier", "duration_s": 1})
    clock.advance(2)
    await eventually(lambda: len(alerts(tutor, "TIMER_END")) == 2, what="the barrier timer")
    assert [a["label"] for a in alerts(tutor)] == ["Quiz", "Quiz", "barrier"]
    assert (await tutor.join(session_id))["timers"] == []


async def test_a_students_timer_reaches_only_them_and_staff(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await timed_hub(make_hub, clock)
    session_id, tutor, students = await live_session(hub)
    ack = await tutor.call(
        "timer:start",
        {"session_id": session_id, "label": "Reading", "duration_s": 30, "student_id": "s2"},
    )
    clock.advance(31)
    await eventually(lambda: alerts(students["s2"], "TIMER_END"), what="s2's alert")
    await eventually(lambda: alerts(tutor, "TIMER_END"), what="tutor's alert")
    assert students["s1"].events("timer:started") == []
    assert alerts(students["s1"]) == []
    assert (await students["s1"].join(session_id))["timers"] == []
    del ack


async def test_cancel_and_refusals(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await timed_hub(make_hub, clock)
    session_id, tutor, students = await live_session(hub)
    timer = (
        await tutor.call("timer:start", {"session_id": session_id, "label": "x", "duration_s": 10})
    )["timer"]
    assert await tutor.call(
        "timer:cancel", {"session_id": session_id, "timer_id": timer["id"]}
    ) == {"ok": True}
    again = await tutor.call("timer:cancel", {"session_id": session_id, "timer_id": timer["id"]})
    assert again["error"]["code"] == "CONFLICT"
    await eventually(lambda: students["s1"].events("timer:cancelled"), what="cancelled")
    clock.advance(20)
    await tutor.call("timer:start", {"session_id": session_id, "label": "barrier", "duration_s": 1})
    clock.advance(2)
    await eventually(lambda: alerts(tutor, "TIMER_END"), what="barrier")
    assert [a["label"] for a in alerts(tutor)] == ["barrier"]
    for client, payload, code in (
        (students["s1"], {"label": "mine", "duration_s": 5}, "FORBIDDEN"),
        (tutor, {"label": "", "duration_s": 5}, "VALIDATION_ERROR"),
        (tutor, {"label": "x", "duration_s": 0}, "VALIDATION_ERROR"),
        (tutor, {"label": "x", "duration_s": 5, "warn_before_s": 5}, "VALIDATION_ERROR"),
        (tutor, {"label": "x", "duration_s": 5, "student_id": "s9"}, "NOT_FOUND"),
    ):
        ack = await client.call("timer:start", {"session_id": session_id, **payload})
        assert ack["error"]["code"] == code, payload
    ack = await tutor.call("timer:cancel", {"session_id": session_id, "timer_id": "nope"})
    assert ack["error"]["code"] == "NOT_FOUND"


async def test_a_timer_fires_once_even_when_its_hub_is_gone(make_hub: HubFactory) -> None:
    first_clock, second_clock = FakeClock(), FakeClock()
    first = await timed_hub(make_hub, first_clock)
    session_id, tutor, _ = await live_session(first, ("s1",))
    await tutor.call("timer:start", {"session_id": session_id, "label": "Essay", "duration_s": 30})
    second = await timed_hub(make_hub, second_clock)
    watcher = await second.connect("tutor-1", "TUTOR")
    await watcher.join(session_id)
    if first.urls:
        # Hubs on one Redis are one cluster, whose sweeps one live hub leads: the first
        # hubs stop, and a hub of the second set takes the lead and fires the timer.
        await first.stop()
    # Apart, the first hub's time stands still (as if it had died); the second hub,
    # on the same database, sees the timer come due and fires it.
    second_clock.advance(31)
    await eventually(lambda: alerts(watcher, "TIMER_END"), what="fired by the second hub")
    if first.urls:
        barrier_hub, barrier_clock, barrier_tutor = second, second_clock, watcher
    else:  # the first hub's time goes on: it must not fire the timer again
        first_clock.advance(31)
        barrier_hub, barrier_clock, barrier_tutor = first, first_clock, tutor
    await barrier_tutor.call(
        "timer:start", {"session_id": session_id, "label": "barrier", "duration_s": 1}
    )
    barrier_clock.advance(2)
    await eventually(
        lambda: "barrier" in [a["label"] for a in alerts(barrier_tutor)],
        what=f"barrier on {'the second' if barrier_hub is second else 'the first'} hub",
    )
    # Essay never fired twice.
    assert [a["label"] for a in alerts(watcher)].count("Essay") == 1
    if not first.urls:
        assert sorted(a["label"] for a in alerts(tutor)) == ["barrier"]


async def test_idle_and_help_alerts_fire_once(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await timed_hub(
        make_hub, clock, idle_after_s=60, idle_alert_s=120, help_target_normal_s=300
    )
    session_id, tutor, students = await live_session(hub, ("s1", "s2"))
    raised = await students["s2"].call("help:request", {"session_id": session_id, "message": "?"})
    assert raised["ok"], raised
    clock.advance(121)
    idle = await eventually(
        lambda: len(alerts(tutor, "STUDENT_IDLE")) == 2 and alerts(tutor, "STUDENT_IDLE"),
        what="idle alerts for both",
    )
    assert {a["student_id"] for a in idle} == {"s1", "s2"}
    clock.advance(200)  # the help request has now waited 321 s > 300 s
    waiting = await eventually(lambda: alerts(tutor, "HELP_WAITING"), what="help alert")
    assert [a["student_id"] for a in waiting] == ["s2"]
    # The alert names the request that waited; no other alert carries a help_id.
    assert [a["help_id"] for a in waiting] == [raised["help_request"]["id"]]
    assert all("help_id" not in a for a in idle)
    clock.advance(100)
    reconnected = await hub.connect("tutor-1", "TUTOR")
    await reconnected.join(session_id)
    await tutor.call("timer:start", {"session_id": session_id, "label": "barrier", "duration_s": 1})
    clock.advance(2)
    await eventually(lambda: alerts(tutor, "TIMER_END"), what="barrier")
    assert len(alerts(tutor, "STUDENT_IDLE")) == 2 and len(alerts(tutor, "HELP_WAITING")) == 1
    for student in students.values():  # staff alerts stay with the staff
        assert alerts(student, "STUDENT_IDLE") == alerts(student, "HELP_WAITING") == []


async def test_session_ending_and_over_time(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await timed_hub(make_hub, clock, session_ending_warn_s=300)
    api = hub.as_("tutor-1", "TUTOR")
    start = clock.now
    status, created = await api.post(
        "/api/v1/sessions",
        session_body(
            starts_at=start.isoformat(), ends_at=(start + timedelta(minutes=30)).isoformat()
        ),
    )
    session_id = created["data"]["id"]
    await api.post(f"/api/v1/sessions/{session_id}/enrollments", {"student_id": "s1"})
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)  # makes the session LIVE
    student = await hub.connect("s1", "STUDENT")
    await student.join(session_id)
    clock.advance(25 * 60 + 1)
    await eventually(lambda: alerts(tutor, "SESSION_ENDING"), what="ending soon")
    await eventually(lambda: alerts(student, "SESSION_ENDING"), what="students told too")
    clock.advance(5 * 60)
    await eventually(lambda: alerts(tutor, "SESSION_OVERTIME"), what="over time")
    assert alerts(student, "SESSION_OVERTIME") == []
    assert len(alerts(tutor, "SESSION_ENDING")) == 1


def most(hub: Hub, name: str, **labels: str) -> float:
    """The metric's largest value over the test's hubs (one of them leads the sweeps)."""
    return max(app[METRICS].registry.get_sample_value(name, labels) or 0.0 for app in hub.apps)


async def test_alerts_and_the_help_queue_are_measured(make_hub: HubFactory) -> None:
    # What the ops dashboard and the "help waiting" alert read (docs/ops/).
    clock = FakeClock()
    hub = await timed_hub(make_hub, clock, help_target_normal_s=300, help_target_urgent_s=60)
    session_id, tutor, students = await live_session(hub, ("s1", "s2"))
    raised = {}
    for student, priority in (("s1", "NORMAL"), ("s2", "URGENT")):
        raised[student] = await students[student].call(
            "help:request", {"session_id": session_id, "message": "?", "priority": priority}
        )
        assert raised[student]["ok"], raised
    clock.advance(100)
    await eventually(
        lambda: most(hub, "hub_help_request_oldest_wait_seconds", priority="URGENT") >= 100,
        what="the help queue's gauges",
    )
    assert most(hub, "hub_help_requests_waiting", priority="NORMAL") == 1
    assert most(hub, "hub_help_requests_waiting", priority="URGENT") == 1
    assert most(hub, "hub_help_requests_waiting", priority="LOW") == 0
    # 100 s is past the urgent target (60 s), not the normal one (300 s).
    assert most(hub, "hub_help_requests_overdue", priority="URGENT") == 1
    assert most(hub, "hub_help_requests_overdue", priority="NORMAL") == 0
    await eventually(lambda: alerts(tutor, "HELP_WAITING"), what="the urgent request's alert")
    assert most(hub, "hub_alerts_total", kind="HELP_WAITING") == 1
    cancel = {"session_id": session_id, "help_id": raised["s2"]["help_request"]["id"]}
    assert (await students["s2"].call("help:update", {**cancel, "status": "CANCELLED"}))["ok"]
    clock.advance(1)
    await eventually(
        lambda: most(hub, "hub_help_requests_waiting", priority="URGENT") == 0,
        what="the cancelled request leaving the queue",
    )
    assert most(hub, "hub_help_requests_overdue", priority="URGENT") == 0
    assert most(hub, "hub_help_request_oldest_wait_seconds", priority="URGENT") == 0
    await tutor.call("timer:start", {"session_id": session_id, "label": "t", "duration_s": 1})
    clock.advance(2)
    await eventually(lambda: alerts(tutor, "TIMER_END"), what="the timer's end")
    assert most(hub, "hub_alerts_total", kind="TIMER_END") == 1
    assert most(hub, "hub_alerts_total", kind="HELP_WAITING") == 1
