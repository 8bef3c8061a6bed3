"""Help requests, live: asking, serving order with escalation, who may update what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Hub, HubFactory
from tests.support import Client, eventually
from tests.test_canvas import live_session


class FakeClock:
    """What the hub reads as now; a test moves it instead of sleeping."""

    def __init__(self) -> None:
        # Real time to start with: sessions made in a test are scheduled around it.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def ask(client: Client, session_id: str, **payload: Any) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(
        "help:request", {"session_id": session_id, "message": "stuck", **payload}
    )
    return ack


async def update(client: Client, session_id: str, help_id: str, **payload: Any) -> Any:
    return await client.call(
        "help:update", {"session_id": session_id, "help_id": help_id, **payload}
    )


async def test_serving_order_is_priority_then_age_with_escalation(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await make_hub(clock=clock, help_target_low_s=120, help_target_normal_s=300)
    session_id, tutor, students = await live_session(hub, ("s1", "s2", "s3", "s4"))
    low = (await ask(students["s1"], session_id, priority="LOW"))["help_request"]
    clock.advance(10)
    normal = (await ask(students["s2"], session_id, priority="NORMAL"))["help_request"]
    clock.advance(10)
    urgent = (await ask(students["s3"], session_id, priority="URGENT"))["help_request"]
    clock.advance(10)
    normal2 = (await ask(students["s4"], session_id, priority="NORMAL"))["help_request"]
    updates = await eventually(
        lambda: len(tutor.events("help:updated")) == 4 and tutor.events("help:updated"),
        what="four queue updates",
    )
    assert updates[-1]["queue"] == [urgent["id"], normal["id"], normal2["id"], low["id"]]
    # The LOW request has now waited past its 120 s target: it moves up one level,
    # ahead of the NORMAL requests that are younger than it.
    clock.advance(100)
    ack = await update(tutor, session_id, urgent["id"], status="IN_PROGRESS")
    assert ack["help_request"]["status"] == "IN_PROGRESS"
    assert ack["help_request"]["time_to_first_response_s"] == 110  # asked at +20 s
    last = await eventually(
        lambda: len(tutor.events("help:updated")) == 5 and tutor.events("help:updated")[-1],
        what="queue after escalation",
    )
    assert last["queue"] == [urgent["id"], low["id"], normal["id"], normal2["id"]]
    tutor_again = await hub.connect("tutor-1", "TUTOR")
    join = await tutor_again.join(session_id)
    assert [h["id"] for h in join["help"]] == last["queue"]
    assert [h["escalated"] for h in join["help"]] == [False, True, False, False]


async def test_students_see_only_their_own_requests(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    first = (await ask(students["s1"], session_id, priority="HIGH"))["help_request"]
    mine = (await ask(students["s2"], session_id, exercise_id="ex-1"))["help_request"]
    got = await eventually(lambda: students["s2"].events("help:updated"), what="own update")
    assert got == [
        {"session_id": session_id, "help_request": mine, "queue": [mine["id"]], "position": 2}
    ]
    assert all(
        u["help_request"]["student_id"] == "s1" for u in students["s1"].events("help:updated")
    )
    assert first["id"] not in str(students["s2"].received)
    join = await students["s2"].join(session_id)
    assert [h["id"] for h in join["help"]] == [mine["id"]]


async def test_waiting_students_hear_their_place_move_when_others_requests_change(
    hub: Hub,
) -> None:
    """A student's place in the queue changes when a request ahead of theirs is
    raised, taken or closed; they hear their new place, never whose request it was."""
    session_id, tutor, students = await live_session(hub, ("s1", "s2", "s3"))
    first = (await ask(students["s1"], session_id, priority="NORMAL"))["help_request"]
    await ask(students["s2"], session_id, priority="NORMAL")
    # s3 asks URGENT: it goes first; s1 and s2 move back one place each.
    await ask(students["s3"], session_id, priority="URGENT")
    await eventually(
        lambda: (
            students["s2"].events("help:position")[-1:]
            == [{"session_id": session_id, "position": 3}]
        ),
        what="s2 moved back to third",
    )
    # s1 may be on another hub than s2: its place comes when it comes.
    await eventually(
        lambda: (
            students["s1"].events("help:position")[-1:]
            == [{"session_id": session_id, "position": 2}]
        ),
        what="s1 moved back to second",
    )
    # s1's request is resolved: s2 moves up to second.
    await update(tutor, session_id, first["id"], status="RESOLVED")
    await eventually(
        lambda: (
            students["s2"].events("help:position")[-1:]
            == [{"session_id": session_id, "position": 2}]
        ),
        what="s2 moved up to second",
    )
    # s1 has no request left: no place is sent to them for that change.
    assert students["s1"].events("help:position")[-1]["position"] == 2
    for student in students.values():
        for event in student.events("help:position"):
            assert set(event) == {"session_id", "position"}


async def test_one_open_request_per_student_and_exercise(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    s1 = students["s1"]
    first = (await ask(s1, session_id, exercise_id="ex-1"))["help_request"]
    ack = await ask(s1, session_id, exercise_id="ex-1")
    assert ack["error"]["code"] == "CONFLICT"
    assert (await ask(s1, session_id, exercise_id="ex-2"))["ok"]
    assert (await ask(s1, session_id))["ok"]
    assert (await ask(s1, session_id))["error"]["code"] == "CONFLICT"
    await update(tutor, session_id, first["id"], status="RESOLVED", response="Use the grid")
    again = await ask(s1, session_id, exercise_id="ex-1")
    assert again["ok"] and again["help_request"]["id"] != first["id"]


async def test_who_may_update_what(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    observer = await hub.connect("sup", "SUPERVISOR")
    await observer.join(session_id)
    request = (await ask(students["s1"], session_id))["help_request"]
    for client, status, code in (
        (students["s2"], "CANCELLED", "FORBIDDEN"),  # another student's request
        (students["s1"], "RESOLVED", "FORBIDDEN"),  # a student may only cancel
        (students["s1"], "IN_PROGRESS", "FORBIDDEN"),
        (observer, "IN_PROGRESS", "FORBIDDEN"),
        (tutor, "OPEN", "CONFLICT"),
    ):
        ack = await update(client, session_id, request["id"], status=status)
        assert ack["error"]["code"] == code, (status, ack)
    ack = await update(tutor, session_id, "no-such-request", status="RESOLVED")
    assert ack["error"]["code"] == "NOT_FOUND"
    join = await tutor.join(session_id)
    assert [(h["id"], h["status"]) for h in join["help"]] == [(request["id"], "OPEN")]
    ack = await update(students["s1"], session_id, request["id"], status="CANCELLED")
    assert ack["help_request"]["status"] == "CANCELLED"
    assert ack["help_request"]["resolved_at"]
    ack = await update(tutor, session_id, request["id"], status="RESOLVED")
    assert ack["error"]["code"] == "CONFLICT"


async def test_resolution_is_stored_with_response_times(make_hub: HubFactory) -> None:
    clock = FakeClock()
    hub = await make_hub(clock=clock)
    session_id, tutor, students = await live_session(hub, ("s1",))
    request = (await ask(students["s1"], session_id, priority="HIGH", exercise_id="ex-9"))[
        "help_request"
    ]
    clock.advance(30)
    await update(tutor, session_id, request["id"], status="IN_PROGRESS")
    clock.advance(90)
    ack = await update(
        tutor, session_id, request["id"], status="RESOLVED", response="Carry the one"
    )
    done = ack["help_request"]
    assert (done["status"], done["response"], done["handled_by"]) == (
        "RESOLVED",
        "Carry the one",
        "tutor-1",
    )
    assert (done["time_to_first_response_s"], done["time_to_resolve_s"]) == (30, 120)
    assert done["exercise_id"] == "ex-9"
    for payload in ({"message": ""}, {"priority": "PANIC"}, {"message": "x" * 1001}):
        ack = await students["s1"].call("help:request", {"session_id": session_id, **payload})
        assert ack["error"]["code"] == "VALIDATION_ERROR", payload
    ack = await tutor.call("help:request", {"session_id": session_id, "message": "me too"})
    assert ack["error"]["code"] == "FORBIDDEN"


async def test_help_over_rest(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    a = (await ask(students["s1"], session_id))["help_request"]
    b = (await ask(students["s2"], session_id))["help_request"]
    await update(tutor, session_id, a["id"], status="RESOLVED")
    path = f"/api/v1/sessions/{session_id}/help"
    status, got = await hub.as_("tutor-1", "TUTOR").get(path)
    assert status == 200 and [h["id"] for h in got["data"]] == [a["id"], b["id"]]
    status, got = await hub.as_("tutor-1", "TUTOR").get(path, status="OPEN")
    assert [h["id"] for h in got["data"]] == [b["id"]]
    status, got = await hub.as_("s2", "STUDENT").get(path)
    assert [h["id"] for h in got["data"]] == [b["id"]]
    status, got = await hub.as_("p1", "PARENT").get(path)
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("adm", "CENTER_ADMIN", "c2").get(path)
    assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
