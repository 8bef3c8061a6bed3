"""The tutor's controls, live: Teach/Observe, assignments, progress, notes, ending."""

from __future__ import annotations

from sqlalchemy import select

from persistence.models import AuditEntry, ExerciseAttempt, TutorNote
from tests.conftest import Hub
from tests.support import eventually
from tests.test_canvas import live_session

SESSIONS = "/api/v1/sessions"


async def test_teach_observe_reaches_staff_and_that_student_and_is_stored(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    observer = await hub.connect("sup", "SUPERVISOR")
    await observer.join(session_id)
    ack = await tutor.call(
        "mode:set", {"session_id": session_id, "student_id": "s1", "mode": "TEACH"}
    )
    assert ack == {"ok": True}
    expected = {"session_id": session_id, "student_id": "s1", "mode": "TEACH"}
    for client in (tutor, observer, students["s1"]):
        got = await eventually(lambda c=client: c.events("mode:changed"), what="mode:changed")
        assert got == [expected]
    # The join state carries it; the other student heard nothing.
    again = await hub.connect("tutor-1", "TUTOR")
    roster = {s["student_id"]: s for s in (await again.join(session_id))["students"]}
    assert (roster["s1"]["mode"], roster["s2"]["mode"]) == ("TEACH", "OBSERVE")
    assert students["s2"].events("mode:changed") == []


async def test_only_the_tutor_sets_modes(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    observer = await hub.connect("sup", "SUPERVISOR")
    await observer.join(session_id)
    payload = {"session_id": session_id, "student_id": "s1", "mode": "TEACH"}
    assert (await students["s1"].call("mode:set", payload))["error"]["code"] == "FORBIDDEN"
    assert (await students["s2"].call("mode:set", payload))["error"]["code"] == "FORBIDDEN"
    assert (await observer.call("mode:set", payload))["error"]["code"] == "FORBIDDEN"
    bad = {**payload, "mode": "SLEEP"}
    assert (await tutor.call("mode:set", bad))["error"]["code"] == "VALIDATION_ERROR"
    missing = {**payload, "student_id": "s9"}
    assert (await tutor.call("mode:set", missing))["error"]["code"] == "NOT_FOUND"
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session_id}/enrollments/s1")
    assert got["data"]["mode"] == "OBSERVE"


async def test_assignment_is_stored_and_pushed_to_that_student(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    exercise = {"id": "ex-3", "title": "Long division", "items": [1, 2], "difficulty": "B"}
    ack = await tutor.call(
        "exercise:assign", {"session_id": session_id, "student_id": "s2", "exercise": exercise}
    )
    assert ack["ok"] is True
    assert ack["assignment"]["exercise"] == exercise and ack["assignment"]["assigned_at"]
    pushed = await eventually(lambda: students["s2"].events("exercise:assigned"), what="push")
    assert pushed[0]["exercise"] == exercise and pushed[0]["student_id"] == "s2"
    assert students["s1"].events("exercise:assigned") == []
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session_id}/enrollments/s2")
    assert got["data"]["assignment"]["exercise"]["id"] == "ex-3"
    for bad in ({"id": "ex"}, {"title": "x"}, "ex-3"):
        ack = await tutor.call(
            "exercise:assign", {"session_id": session_id, "student_id": "s2", "exercise": bad}
        )
        assert ack["error"]["code"] == "VALIDATION_ERROR", bad


async def test_progress_reaches_staff_and_attempts_are_stored(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    s1 = students["s1"]
    for pct, done in ((20, False), (60, False), (100, True), (10, False)):
        ack = await s1.call(
            "exercise:progress",
            {
                "session_id": session_id,
                "exercise_id": "ex-1",
                "progress_pct": pct,
                "completed": done,
            },
        )
        assert ack == {"ok": True}
    updates = await eventually(
        lambda: len(tutor.events("progress:update")) == 4 and tutor.events("progress:update"),
        what="progress at the tutor",
    )
    assert [(u["progress_pct"], u["completed"]) for u in updates] == [
        (20, False),
        (60, False),
        (100, True),
        (10, False),
    ]
    assert students["s2"].events("progress:update") == []
    async with hub.db() as db:
        attempts = (
            await db.scalars(select(ExerciseAttempt).order_by(ExerciseAttempt.started_at))
        ).all()
    assert [(a.progress_pct, a.completed_at is not None) for a in attempts] == [
        (100, True),
        (10, False),
    ]
    for payload, code in (
        ({"exercise_id": "ex-1", "progress_pct": 101}, "VALIDATION_ERROR"),
        ({"exercise_id": "", "progress_pct": 5}, "VALIDATION_ERROR"),
    ):
        ack = await s1.call("exercise:progress", {"session_id": session_id, **payload})
        assert ack["error"]["code"] == code
    ack = await tutor.call(
        "exercise:progress", {"session_id": session_id, "exercise_id": "ex-1", "progress_pct": 5}
    )
    assert ack["error"]["code"] == "FORBIDDEN"


async def test_a_join_brings_each_students_latest_progress_and_a_student_only_their_own(
    hub: Hub,
) -> None:
    session_id, tutor, students = await live_session(hub)
    assert (await tutor.join(session_id))["progress"] == {}
    for exercise_id, pct, done in (("ex-1", 100, True), ("ex-2", 30, False)):
        ack = await students["s1"].call(
            "exercise:progress",
            {
                "session_id": session_id,
                "exercise_id": exercise_id,
                "progress_pct": pct,
                "completed": done,
            },
        )
        assert ack == {"ok": True}
    ack = await students["s2"].call(
        "exercise:progress",
        {"session_id": session_id, "exercise_id": "ex-9", "progress_pct": 100, "completed": True},
    )
    assert ack == {"ok": True}

    progress = (await tutor.join(session_id))["progress"]
    assert {
        s: (p["exercise_id"], p["progress_pct"], p["completed"]) for s, p in progress.items()
    } == {
        "s1": ("ex-2", 30, False),
        "s2": ("ex-9", 100, True),
    }
    assert list(progress["s1"]) == ["exercise_id", "progress_pct", "completed", "at"]
    own = (await students["s2"].join(session_id))["progress"]
    assert list(own) == ["s2"]


async def test_notes_are_stored_with_visibility(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    ack = await tutor.call(
        "note:add",
        {
            "session_id": session_id,
            "student_id": "s1",
            "text": "Needs fractions review",
            "visibility": "PARENT",
        },
    )
    assert ack["ok"] is True
    note = ack["note"]
    assert (note["student_id"], note["visibility"], note["author_id"]) == (
        "s1",
        "PARENT",
        "tutor-1",
    )
    ack = await tutor.call(
        "note:add", {"session_id": session_id, "text": "Room was noisy", "visibility": "PRIVATE"}
    )
    assert ack["note"]["student_id"] is None
    for payload in (
        {"text": "", "visibility": "PRIVATE"},
        {"text": "x", "visibility": "EVERYONE"},
        {"text": "x" * 5001, "visibility": "PRIVATE"},
    ):
        ack = await tutor.call("note:add", {"session_id": session_id, **payload})
        assert ack["error"]["code"] == "VALIDATION_ERROR"
    ack = await students["s1"].call(
        "note:add", {"session_id": session_id, "text": "hi", "visibility": "STUDENT"}
    )
    assert ack["error"]["code"] == "FORBIDDEN"
    async with hub.db() as db:
        notes = (await db.scalars(select(TutorNote).order_by(TutorNote.created_at))).all()
    assert [n.text for n in notes] == ["Needs fractions review", "Room was noisy"]


async def test_the_tutor_ends_the_session_for_everyone(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    ack = await students["s1"].call("session:end", {"session_id": session_id})
    assert ack["error"]["code"] == "FORBIDDEN"
    assert await tutor.call("session:end", {"session_id": session_id}) == {"ok": True}
    for client in (tutor, *students.values()):
        await eventually(lambda c=client: c.events("session:ended"), what="session:ended")
    for client, event, payload in (
        (tutor, "mode:set", {"student_id": "s1", "mode": "TEACH"}),
        (students["s1"], "exercise:progress", {"exercise_id": "e", "progress_pct": 1}),
        (tutor, "session:end", {}),
    ):
        ack = await client.call(event, {"session_id": session_id, **payload})
        assert ack["error"]["code"] == "SESSION_ENDED", event
    status, got = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session_id}")
    assert got["data"]["status"] == "ENDED" and got["data"]["ended_at"]
    async with hub.db() as db:
        actions = (await db.scalars(select(AuditEntry.action))).all()
    assert actions.count("session.end") == 1


async def test_nul_characters_in_live_events_are_refused(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    ack = await tutor.call(
        "note:add", {"session_id": session_id, "text": "a\u0000b", "visibility": "PRIVATE"}
    )
    assert ack["error"]["code"] == "VALIDATION_ERROR"
    ack = await students["s1"].call(
        "canvas:patch",
        {
            "session_id": session_id,
            "ops": [{"op": "add", "path": "/elements/a", "value": {"text": "x\u0000"}}],
        },
    )
    assert ack["error"]["code"] == "VALIDATION_ERROR"
    ack = await students["s1"].call(
        "canvas:patch",
        {"session_id": session_id, "ops": [{"op": "add", "path": "/elements/a", "value": 1}]},
    )
    assert ack == {"ok": True, "seq": 1}


async def test_announcements_reach_the_session_or_one_student(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    ack = await tutor.call("announcement:send", {"session_id": session_id, "text": "Break!"})
    assert ack == {"ok": True}
    for client in (tutor, *students.values()):
        got = await eventually(lambda c=client: c.events("announcement"), what="announcement")
        assert got[0]["text"] == "Break!" and got[0]["from"] == "tutor-1"
    await tutor.call(
        "announcement:send", {"session_id": session_id, "text": "Well done", "student_id": "s2"}
    )
    await eventually(lambda: len(students["s2"].events("announcement")) == 2, what="to s2")
    await eventually(lambda: len(tutor.events("announcement")) == 2, what="staff copy")
    assert len(students["s1"].events("announcement")) == 1
    ack = await students["s1"].call("announcement:send", {"session_id": session_id, "text": "hi"})
    assert ack["error"]["code"] == "FORBIDDEN"
    ack = await tutor.call("announcement:send", {"session_id": session_id, "text": ""})
    assert ack["error"]["code"] == "VALIDATION_ERROR"


async def test_notes_over_rest_by_visibility(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    for student_id, text, visibility in (
        ("s1", "for s1", "STUDENT"),
        ("s1", "private", "PRIVATE"),
        ("s2", "for s2", "STUDENT"),
        (None, "room", "PRIVATE"),
    ):
        payload = {"session_id": session_id, "text": text, "visibility": visibility}
        if student_id:
            payload["student_id"] = student_id
        assert (await tutor.call("note:add", payload))["ok"]
    path = f"{SESSIONS}/{session_id}/notes"
    status, got = await hub.as_("tutor-1", "TUTOR").get(path)
    assert [n["text"] for n in got["data"]] == ["for s1", "private", "for s2", "room"]
    status, got = await hub.as_("tutor-1", "TUTOR").get(path, student_id="s1")
    assert [n["text"] for n in got["data"]] == ["for s1", "private"]
    status, got = await hub.as_("s1", "STUDENT").get(path)
    assert status == 200 and [n["text"] for n in got["data"]] == ["for s1"]
    status, got = await hub.as_("p1", "PARENT").get(path)
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
