"""Socket.IO against a real hub on loopback: connect, join and leave as each role."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token
from tests.conftest import Hub, HubFactory
from tests.support import Client, eventually, session_body

SESSIONS = "/api/v1/sessions"


async def make_session(hub: Hub, students: tuple[str, ...] = ("s1", "s2"), **body: object) -> str:
    tutor = hub.as_("tutor-1", "TUTOR")
    status, created = await tutor.post(SESSIONS, session_body("tutor-1", **body))
    assert status == 201, created
    session_id: str = created["data"]["id"]
    for index, student in enumerate(students):
        status, got = await tutor.post(
            f"{SESSIONS}/{session_id}/enrollments",
            {
                "student_id": student,
                "student_name": f"Student {student}",
                "course_id": f"course-{index}",
                "lesson_id": f"lesson-{index}",
                "level": str(index),
            },
        )
        assert status == 201, got
    return session_id


async def refused(hub: Hub, token: str | None) -> dict:
    client = Client()
    hub.clients.append(client)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(hub.url, token)
    data = client.connect_error
    assert isinstance(data, dict), data
    return data


async def test_connect_is_refused_without_a_valid_token(hub: Hub) -> None:
    forged = mint_token(
        Settings(jwt_secret="another-secret-that-is-long-enough-to-be-valid"),
        sub="t",
        role=Role.TUTOR,
        center="c1",
    )
    cases = {
        None: "UNAUTHORIZED",
        "": "UNAUTHORIZED",
        "not-a-jwt": "UNAUTHORIZED",
        forged: "UNAUTHORIZED",
        hub.tokens("t", "TUTOR", ttl_s=-5): "TOKEN_EXPIRED",
    }
    for token, code in cases.items():
        data = await refused(hub, token)
        assert data["data"]["code"] == code, (token, data)
        assert data["data"]["message"]


async def test_join_as_tutor_gets_the_roster_and_starts_the_session(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR", name="Ms Tutor")
    ack = await tutor.join(session_id)
    assert ack["ok"] is True
    assert ack["you"]["role"] == "TUTOR" and ack["you"]["user_id"] == "tutor-1"
    assert ack["you"]["name"] == "Ms Tutor"
    assert ack["session"]["id"] == session_id
    assert ack["session"]["status"] == "LIVE" and ack["session"]["started_at"]
    students = {s["student_id"]: s for s in ack["students"]}
    assert set(students) == {"s1", "s2"}
    assert students["s2"]["course_id"] == "course-1" and students["s2"]["level"] == "1"
    assert students["s1"]["status"] == "offline"
    empty = {"elements": {}, "annotations": {}, "meta": {}}
    assert {k: (v["seq"], v["doc"]) for k, v in ack["canvases"].items()} == {
        "s1": (0, empty),
        "s2": (0, empty),
    }
    assert (ack["help"], ack["timers"]) == ([], [])


async def test_observers_join_read_only_as_observer(hub: Hub) -> None:
    session_id = await make_session(hub)
    for sub, role, center in (
        ("sup", "SUPERVISOR", "c1"),
        ("adm", "CENTER_ADMIN", "c1"),
        ("root", "SUPER_ADMIN", "hq"),
    ):
        client = await hub.connect(sub, role, center)
        ack = await client.join(session_id)
        assert ack["ok"] is True, (role, ack)
        assert ack["you"]["role"] == "OBSERVER"
        assert len(ack["students"]) == 2


async def test_student_join_shows_only_themselves(hub: Hub) -> None:
    session_id = await make_session(hub)
    student = await hub.connect("s1", "STUDENT")
    ack = await student.join(session_id)
    assert ack["ok"] is True
    assert ack["you"]["role"] == "STUDENT"
    assert [s["student_id"] for s in ack["students"]] == ["s1"]
    assert "s2" not in str(ack)


@pytest.mark.parametrize(
    ("sub", "role", "center", "code"),
    [
        ("tutor-2", "TUTOR", "c1", "FORBIDDEN"),  # not this session's tutor
        ("s9", "STUDENT", "c1", "FORBIDDEN"),  # not enrolled
        ("p1", "PARENT", "c1", "FORBIDDEN"),
        ("a1", "ASSESSOR", "c1", "FORBIDDEN"),
        ("tutor-1", "TUTOR", "c2", "NOT_FOUND"),  # another center's session
        ("s1", "STUDENT", "c2", "NOT_FOUND"),
        ("adm", "CENTER_ADMIN", "c2", "NOT_FOUND"),
    ],
)
async def test_join_refusals(hub: Hub, sub: str, role: str, center: str, code: str) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    client = await hub.connect(sub, role, center)
    ack = await client.join(session_id)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert ack["error"]["message"]
    # A refused join is in no room: it hears nothing of the session.
    student = await hub.connect("s1", "STUDENT")
    assert (await student.join(session_id))["ok"]
    await eventually(lambda: tutor.events("presence:update"), what="presence at the tutor")
    assert client.received == {}


async def test_unknown_session_is_not_found(hub: Hub) -> None:
    tutor = await hub.connect("tutor-1", "TUTOR")
    ack = await tutor.join("no-such-session")
    assert ack["error"]["code"] == "NOT_FOUND"


async def test_bad_payloads_get_validation_errors(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    for payload in (
        None,
        "text",
        42,
        [],
        {},
        {"session_id": ""},
        {"session_id": 5},
        {"session_id": session_id, "extra": 1},
        {"session_id": "x" * 500},
    ):
        ack = await tutor.call("session:join", payload)
        assert ack["ok"] is False, payload
        assert ack["error"]["code"] == "VALIDATION_ERROR", (payload, ack)
    ack = await tutor.call("session:join", {"session_id": session_id})
    assert ack["ok"] is True


async def test_unknown_events_get_an_error_ack(hub: Hub) -> None:
    tutor = await hub.connect("tutor-1", "TUTOR")
    ack = await tutor.call("canvas:paint", {"x": 1})
    assert ack == {
        "ok": False,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "unknown event 'canvas:paint'",
            "details": {"event": "canvas:paint"},
        },
    }


async def test_leave_and_not_joined(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    ack = await tutor.call("session:leave", {"session_id": session_id})
    assert ack["error"]["code"] == "NOT_JOINED"
    assert (await tutor.join(session_id))["ok"]
    assert await tutor.call("session:leave", {"session_id": session_id}) == {"ok": True}
    ack = await tutor.call("session:leave", {"session_id": session_id})
    assert ack["error"]["code"] == "NOT_JOINED"


async def test_staff_see_students_come_online_and_go_offline(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    observer = await hub.connect("sup", "SUPERVISOR")
    await tutor.join(session_id)
    await observer.join(session_id)
    student = await hub.connect("s1", "STUDENT")
    await student.join(session_id)
    online = await eventually(lambda: tutor.events("presence:update"), what="online")
    assert online[0]["student_id"] == "s1" and online[0]["status"] == "active"
    assert online[0]["session_id"] == session_id
    assert online[0]["session_time_s"] == 0 and online[0]["since"]
    await eventually(lambda: observer.events("presence:update"), what="observer sees online")

    await asyncio.sleep(0.05)
    await student.sio.disconnect()
    updates = await eventually(
        lambda: len(tutor.events("presence:update")) == 2 and tutor.events("presence:update"),
        what="offline",
    )
    assert updates[1]["status"] == "offline" and updates[1]["student_id"] == "s1"
    assert updates[1]["total_time_s"] >= 0.05

    # The roster a late-joining tutor gets carries the time spent so far.
    again = await hub.connect("tutor-1", "TUTOR")
    ack = await again.join(session_id)
    s1 = next(s for s in ack["students"] if s["student_id"] == "s1")
    assert s1["status"] == "offline" and s1["total_time_s"] >= 0.05


async def test_two_tabs_of_one_student_are_one_presence(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    tab1 = await hub.connect("s1", "STUDENT")
    tab2 = await hub.connect("s1", "STUDENT")
    await tab1.join(session_id)
    await tab2.join(session_id)
    await eventually(lambda: tutor.events("presence:update"), what="online")
    await tab1.sio.disconnect()
    await tab2.call("session:leave", {"session_id": session_id})
    statuses = await eventually(
        lambda: (
            [u["status"] for u in tutor.events("presence:update")]
            if len(tutor.events("presence:update")) >= 2
            else None
        ),
        what="offline after the last tab",
    )
    assert statuses == ["active", "offline"]


async def test_a_student_hears_nothing_about_other_students(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    s1 = await hub.connect("s1", "STUDENT")
    await s1.join(session_id)
    s2 = await hub.connect("s2", "STUDENT")
    await s2.join(session_id)
    await s2.sio.disconnect()
    await eventually(lambda: len(tutor.events("presence:update")) == 3, what="three updates")
    assert s1.received == {}


async def test_rejoin_is_idempotent(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    student = await hub.connect("s1", "STUDENT")
    assert (await student.join(session_id))["ok"]
    assert (await student.join(session_id))["ok"]
    await student.call("session:leave", {"session_id": session_id})
    updates = await eventually(
        lambda: len(tutor.events("presence:update")) >= 2 and tutor.events("presence:update"),
        what="online then offline",
    )
    assert [u["status"] for u in updates] == ["active", "offline"]


async def test_ended_session_refuses_joins(hub: Hub) -> None:
    session_id = await make_session(hub)
    await hub.as_("tutor-1", "TUTOR").post(f"{SESSIONS}/{session_id}/end")
    tutor = await hub.connect("tutor-1", "TUTOR")
    ack = await tutor.join(session_id)
    assert ack["error"]["code"] == "SESSION_ENDED"


async def test_ending_over_rest_tells_and_releases_everyone(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    student = await hub.connect("s1", "STUDENT")
    await tutor.join(session_id)
    await student.join(session_id)
    status, _ = await hub.as_("tutor-1", "TUTOR").post(f"{SESSIONS}/{session_id}/end")
    assert status == 200
    for client in (tutor, student):
        ended = await eventually(lambda c=client: c.events("session:ended"), what="session:ended")
        assert ended[0]["session_id"] == session_id
    ack = await student.call("session:leave", {"session_id": session_id})
    assert ack["error"]["code"] == "SESSION_ENDED"
    ack = await student.call(
        "canvas:patch",
        {"session_id": session_id, "ops": [{"op": "add", "path": "/elements/a", "value": 1}]},
    )
    assert ack["error"]["code"] == "SESSION_ENDED"


async def test_removing_an_enrollment_evicts_the_student(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    student = await hub.connect("s1", "STUDENT")
    await student.join(session_id)
    status, _ = await hub.as_("tutor-1", "TUTOR").delete(f"{SESSIONS}/{session_id}/enrollments/s1")
    assert status == 200
    removed = await eventually(lambda: student.events("session:removed"), what="removed")
    assert removed[0] == {"session_id": session_id, "reason": "ENROLLMENT_REMOVED"}
    await eventually(lambda: len(tutor.events("presence:update")) == 2, what="offline")
    assert (await student.join(session_id))["error"]["code"] == "FORBIDDEN"


async def test_socket_is_disconnected_when_its_token_expires(hub: Hub) -> None:
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    student = await hub.connect("s1", "STUDENT", ttl_s=2)
    await student.join(session_id)
    await asyncio.wait_for(student.disconnected.wait(), timeout=6)
    assert student.events("hub:closing") == [
        {"code": "TOKEN_EXPIRED", "message": "token has expired"}
    ]
    updates = await eventually(
        lambda: len(tutor.events("presence:update")) == 2 and tutor.events("presence:update"),
        what="offline on expiry",
    )
    assert updates[1]["status"] == "offline"


async def test_refreshing_the_token_keeps_the_socket(hub: Hub) -> None:
    student = await hub.connect("s1", "STUDENT", ttl_s=2)
    # Its token expires (whole seconds) at least a second after the student's first one.
    witness = await hub.connect("s2", "STUDENT", ttl_s=3)
    fresh = hub.tokens("s1", "STUDENT", ttl_s=600)
    ack = await student.call("auth:refresh", {"token": fresh})
    assert ack["ok"] is True and ack["expires_at"] > 0
    for token, code in (
        (hub.tokens("s2", "STUDENT"), "FORBIDDEN"),
        (hub.tokens("s1", "TUTOR"), "FORBIDDEN"),
        (hub.tokens("s1", "STUDENT", "c2"), "FORBIDDEN"),
        ("garbage", "UNAUTHORIZED"),
    ):
        ack = await student.call("auth:refresh", {"token": token})
        assert ack["error"]["code"] == code
    # The hub closes the witness when its token expires: by then the student's first
    # token had expired too, and had the refresh not counted it would have been closed.
    await asyncio.wait_for(witness.disconnected.wait(), timeout=10)
    assert witness.events("hub:closing") == [
        {"code": "TOKEN_EXPIRED", "message": "token has expired"}
    ]
    assert student.events("hub:closing") == []
    assert student.sio.connected
    assert (await student.call("auth:refresh", {"token": fresh}))["ok"] is True


async def test_event_rate_limit_refuses_a_flood_without_side_effects(make_hub: HubFactory) -> None:
    hub = await make_hub(socket_events_per_s=0.5, socket_event_burst=3)
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    flooder = await hub.connect("s1", "STUDENT")
    acks = [await flooder.call("nothing:here", {}) for _ in range(3)]
    assert {a["error"]["code"] for a in acks} == {"VALIDATION_ERROR"}
    refused = await flooder.join(session_id)
    assert refused["error"]["code"] == "RATE_LIMITED"
    # Other sockets have buckets of their own.
    other = await hub.connect("s2", "STUDENT")
    assert (await other.join(session_id))["ok"] is True
    # The refused join changed nothing: the tutor saw only s2 come online.
    updates = await eventually(lambda: tutor.events("presence:update"), what="s2 online")
    assert [u["student_id"] for u in updates] == ["s2"]


async def test_an_oversized_message_drops_only_its_sender(make_hub: HubFactory) -> None:
    hub = await make_hub(max_message_bytes=4096, canvas_max_patch_bytes=4096)
    session_id = await make_session(hub)
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(session_id)
    student = await hub.connect("s1", "STUDENT")
    await student.join(session_id)
    await student.sio.emit("session:join", {"session_id": session_id, "pad": "x" * 10_000})
    await asyncio.wait_for(student.disconnected.wait(), timeout=5)
    updates = await eventually(
        lambda: len(tutor.events("presence:update")) == 2 and tutor.events("presence:update"),
        what="offline after the drop",
    )
    assert updates[1]["status"] == "offline"
    assert tutor.sio.connected
    assert (await tutor.call("session:leave", {"session_id": session_id})) == {"ok": True}


async def test_a_token_inside_the_leeway_keeps_its_socket_until_the_leeway_runs_out(
    make_hub: HubFactory,
) -> None:
    """Connect and events honour the same leeway (issue 19, finding 5): a token that
    expired a moment ago joins and acts, and is closed when exp plus the leeway passes."""
    hub = await make_hub(jwt_leeway_s=3)
    session_id = await make_session(hub)
    student = await hub.connect("s1", "STUDENT", ttl_s=-1)
    ack = await student.join(session_id)
    assert ack["ok"] is True, ack
    ping = await student.call("presence:ping", {"session_id": session_id, "state": "active"})
    assert ping["ok"] is True, ping
    await asyncio.wait_for(student.disconnected.wait(), timeout=6)
    assert student.events("hub:closing") == [
        {"code": "TOKEN_EXPIRED", "message": "token has expired"}
    ]
