"""REST sessions: create, list, get, update, end, with roles, centers and validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from persistence.models import AuditEntry
from tests.conftest import Hub, HubFactory
from tests.support import session_body

SESSIONS = "/api/v1/sessions"


async def create(hub: Hub, tutor: str = "tutor-1", center: str = "c1", **body: object) -> dict:
    status, created = await hub.as_(tutor, "TUTOR", center).post(
        SESSIONS, session_body(tutor, **body)
    )
    assert status == 201, created
    return created["data"]


async def test_tutor_creates_a_session_in_own_center(hub: Hub) -> None:
    status, body = await hub.as_("tutor-1", "TUTOR").post(SESSIONS, session_body(max_students=6))
    assert status == 201
    assert body["success"] is True
    session = body["data"]
    assert session["center_id"] == "c1"
    assert session["tutor_id"] == "tutor-1"
    assert session["status"] == "SCHEDULED"
    assert session["max_students"] == 6
    status, fetched = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/{session['id']}")
    assert status == 200
    assert fetched["data"] == session


async def test_create_is_audited_with_actor_center_and_ip(hub: Hub) -> None:
    session = await create(hub)
    async with hub.db() as db:
        entries = (await db.scalars(select(AuditEntry))).all()
    assert [(e.action, e.actor_id, e.actor_role, e.center_id, e.target_id) for e in entries] == [
        ("session.create", "tutor-1", "TUTOR", "c1", session["id"])
    ]
    assert entries[0].ip == "127.0.0.1"
    assert entries[0].at.tzinfo is not None


async def test_center_admin_creates_for_any_tutor_of_the_center(hub: Hub) -> None:
    status, body = await hub.as_("admin", "CENTER_ADMIN").post(SESSIONS, session_body("tutor-9"))
    assert status == 201
    assert body["data"]["tutor_id"] == "tutor-9"


async def test_super_admin_may_create_in_another_center(hub: Hub) -> None:
    api = hub.as_("root", "SUPER_ADMIN", "hq")
    status, body = await api.post(SESSIONS, session_body(center_id="c7"))
    assert status == 201
    assert body["data"]["center_id"] == "c7"


async def test_creation_refusals(hub: Hub) -> None:
    cases = [
        (hub.as_("tutor-1", "TUTOR"), session_body("tutor-2"), 403, "FORBIDDEN"),
        (hub.as_("s1", "STUDENT"), session_body("tutor-1"), 403, "FORBIDDEN"),
        (hub.as_("sup", "SUPERVISOR"), session_body("tutor-1"), 403, "FORBIDDEN"),
        (hub.as_("adm", "CENTER_ADMIN"), session_body(center_id="c2"), 403, "FORBIDDEN"),
        (hub.api(None), session_body(), 401, "UNAUTHORIZED"),
    ]
    for api, body, status, code in cases:
        got_status, got = await api.post(SESSIONS, body)
        assert (got_status, got["errorCode"]) == (status, code), got
        assert got["success"] is False
        assert got["statusCode"] == status
        assert got["message"]
    status, listed = await hub.as_("adm", "CENTER_ADMIN").get(SESSIONS)
    assert listed["data"] == []


async def test_validation_errors_name_the_field(hub: Hub) -> None:
    api = hub.as_("tutor-1", "TUTOR")
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    # Each body has one problem: (loc, type) of the one error the hub lists. The order
    # of the times is a rule of the whole body (SessionCreate's model validator), which
    # pydantic reports at the body itself (an empty loc): its message names the field.
    bad_bodies = [
        (session_body(title=""), ["title"], "string_too_short"),
        (
            session_body(
                starts_at=start.isoformat(), ends_at=(start - timedelta(minutes=1)).isoformat()
            ),
            [],
            "value_error",
        ),
        (session_body(starts_at="2026-11-23T10:00:00"), ["starts_at"], "timezone_aware"),
        (session_body(max_students=0), ["max_students"], "greater_than_equal"),
        (session_body(surprise=True), ["surprise"], "extra_forbidden"),
        (
            {k: v for k, v in session_body().items() if k != "tutor_id"},
            ["tutor_id"],
            "missing",
        ),
    ]
    for body, loc, kind in bad_bodies:
        status, got = await api.post(SESSIONS, body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), (loc, got)
        errors = got["details"]["errors"]
        assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)], (loc, got)
        if not loc:
            assert errors[0]["msg"] == "Value error, ends_at must be after starts_at", got
    status, got = await api.call("POST", SESSIONS, data=b"{not json")
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    status, got = await api.call("POST", SESSIONS, data=b"[1, 2]")
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    status, got = await api.call("POST", SESSIONS, data=b"")
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")


async def test_another_centers_session_is_not_found_not_forbidden(hub: Hub) -> None:
    session = await create(hub, center="c1")
    path = f"{SESSIONS}/{session['id']}"
    for role in ("TUTOR", "CENTER_ADMIN", "SUPERVISOR", "STUDENT"):
        api = hub.as_("tutor-1" if role == "TUTOR" else "x", role, "c2")
        for method, body in (("GET", None), ("PATCH", {"title": "mine"}), ("POST", None)):
            target = path + "/end" if method == "POST" else path
            status, got = await api.call(method, target, body)
            assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND"), (role, method)
    status, unknown = await hub.as_("tutor-1", "TUTOR").get(f"{SESSIONS}/no-such-session")
    assert (status, unknown["errorCode"]) == (404, "SESSION_NOT_FOUND")
    status, seen = await hub.as_("root", "SUPER_ADMIN", "hq").get(path)
    assert status == 200 and seen["data"]["id"] == session["id"]


async def test_same_center_non_members_are_forbidden(hub: Hub) -> None:
    session = await create(hub)
    path = f"{SESSIONS}/{session['id']}"
    for sub, role in (("tutor-2", "TUTOR"), ("s9", "STUDENT"), ("p1", "PARENT")):
        status, got = await hub.as_(sub, role).get(path)
        assert (status, got["errorCode"]) == (403, "FORBIDDEN"), role
    status, got = await hub.as_("tutor-2", "TUTOR").patch(path, {"title": "taken"})
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("sup", "SUPERVISOR").patch(path, {"title": "taken"})
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, unchanged = await hub.as_("sup", "SUPERVISOR").get(path)
    assert status == 200 and unchanged["data"]["title"] == session["title"]


async def test_update_changes_fields_and_is_audited(hub: Hub) -> None:
    session = await create(hub)
    path = f"{SESSIONS}/{session['id']}"
    status, got = await hub.as_("tutor-1", "TUTOR").patch(
        path, {"title": "Geometry", "max_students": 8}
    )
    assert status == 200
    assert (got["data"]["title"], got["data"]["max_students"]) == ("Geometry", 8)
    status, got = await hub.as_("tutor-1", "TUTOR").patch(path, {"tutor_id": "tutor-2"})
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("adm", "CENTER_ADMIN").patch(path, {"tutor_id": "tutor-2"})
    assert status == 200 and got["data"]["tutor_id"] == "tutor-2"
    async with hub.db() as db:
        actions = (await db.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert actions == ["session.create", "session.update", "session.update"]


async def test_update_refusals_change_nothing(hub: Hub) -> None:
    session = await create(hub)
    path = f"{SESSIONS}/{session['id']}"
    api = hub.as_("tutor-1", "TUTOR")
    for body in ({}, {"title": None}, {"ends_at": session["starts_at"]}, {"status": "ENDED"}):
        status, got = await api.patch(path, body)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), body
    status, got = await api.get(path)
    assert got["data"] == session


async def test_end_is_idempotent_and_freezes_the_session(hub: Hub) -> None:
    session = await create(hub)
    path = f"{SESSIONS}/{session['id']}"
    api = hub.as_("tutor-1", "TUTOR")
    status, ended = await api.post(path + "/end")
    assert status == 200
    assert ended["data"]["status"] == "ENDED" and ended["data"]["ended_at"]
    status, again = await api.post(path + "/end")
    assert status == 200 and again["data"]["ended_at"] == ended["data"]["ended_at"]
    status, got = await api.patch(path, {"title": "late change"})
    assert (status, got["errorCode"]) == (409, "SESSION_ENDED")
    status, got = await hub.as_("s1", "STUDENT").post(path + "/end")
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")


async def test_list_filters_by_day_in_a_time_zone_tutor_and_status(hub: Hub) -> None:
    def at(day: int, hour: int) -> dict[str, str]:
        start = datetime(2026, 11, day, hour, tzinfo=UTC)
        return {
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
        }

    late_21 = await create(hub, "tutor-1", **at(21, 16))  # 22 Nov 01:00 in Asia/Tokyo
    on_22 = await create(hub, "tutor-1", **at(22, 9))
    other = await create(hub, "tutor-2", **at(22, 16))  # 23 Nov 01:00 in Asia/Tokyo
    await create(hub, "tutor-3", center="c2", **at(22, 9))
    admin = hub.as_("adm", "CENTER_ADMIN")

    status, got = await admin.get(SESSIONS, day="2026-11-22")
    assert status == 200
    assert [s["id"] for s in got["data"]] == [on_22["id"], other["id"]]
    status, got = await admin.get(SESSIONS, day="2026-11-22", tz="Asia/Tokyo")
    assert [s["id"] for s in got["data"]] == [late_21["id"], on_22["id"]]
    status, got = await admin.get(SESSIONS, tutor_id="tutor-2")
    assert [s["id"] for s in got["data"]] == [other["id"]]
    await hub.as_("tutor-2", "TUTOR").post(f"{SESSIONS}/{other['id']}/end")
    status, got = await admin.get(SESSIONS, status="ENDED")
    assert [s["id"] for s in got["data"]] == [other["id"]]

    # A tutor sees only their own; asking for another tutor's is refused.
    status, got = await hub.as_("tutor-1", "TUTOR").get(SESSIONS)
    assert {s["id"] for s in got["data"]} == {late_21["id"], on_22["id"]}
    status, got = await hub.as_("tutor-1", "TUTOR").get(SESSIONS, tutor_id="tutor-2")
    assert (status, got["errorCode"]) == (403, "FORBIDDEN")
    status, got = await hub.as_("root", "SUPER_ADMIN", "hq").get(SESSIONS, day="2026-11-22")
    assert got["pagination"]["total"] == 3

    for params in (
        {"day": "22-11-2026"},
        {"tz": "Mars/Olympus"},
        {"status": "PAUSED"},
        {"limit": "0"},
        {"page": "x"},
        {"colour": "red"},
    ):
        status, got = await admin.get(SESSIONS, **params)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), params


async def test_list_paginates_with_the_envelope(hub: Hub) -> None:
    created = [await create(hub) for _ in range(5)]
    api = hub.as_("tutor-1", "TUTOR")
    seen = []
    for page in (1, 2, 3):
        status, got = await api.get(SESSIONS, page=page, limit=2)
        assert status == 200
        assert got["pagination"] == {
            "page": page,
            "limit": 2,
            "total": 5,
            "totalPages": 3,
            "hasNext": page < 3,
            "hasPrev": page > 1,
        }
        seen += [s["id"] for s in got["data"]]
    assert sorted(seen) == sorted(s["id"] for s in created)
    status, got = await api.get(SESSIONS, page=9, limit=2)
    assert got["data"] == [] and got["pagination"]["hasNext"] is False


async def test_students_list_only_sessions_they_are_enrolled_in(hub: Hub) -> None:
    mine = await create(hub)
    await create(hub)
    tutor = hub.as_("tutor-1", "TUTOR")
    await tutor.post(f"{SESSIONS}/{mine['id']}/enrollments", {"student_id": "s1"})
    status, got = await hub.as_("s1", "STUDENT").get(SESSIONS)
    assert status == 200 and [s["id"] for s in got["data"]] == [mine["id"]]
    status, got = await hub.as_("s1", "STUDENT").get(f"{SESSIONS}/{mine['id']}")
    assert status == 200
    # A parent lists their linked children's sessions (tests/test_roles.py): with none
    # linked, nothing.
    status, got = await hub.as_("p1", "PARENT").get(SESSIONS)
    assert (status, got["data"]) == (200, [])


async def test_rest_rate_limit_is_per_user(make_hub: HubFactory) -> None:
    hub = await make_hub(rest_requests_per_s=0.5, rest_request_burst=2)
    api = hub.as_("tutor-1", "TUTOR")
    assert [(await api.get(SESSIONS))[0] for _ in range(2)] == [200, 200]
    status, got = await api.post(SESSIONS, session_body())
    assert (status, got["errorCode"]) == (429, "RATE_LIMITED")
    status, got = await hub.as_("adm", "CENTER_ADMIN").get(SESSIONS)
    assert status == 200 and got["data"] == []  # the refused create changed nothing


async def test_nul_characters_are_refused_on_every_backend(hub: Hub) -> None:
    api = hub.as_("tutor-1", "TUTOR")
    status, got = await api.post(SESSIONS, session_body(title="Alge\u0000bra"))
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    status, got = await api.post(SESSIONS, session_body(title="C:\\u0000 is fine as text"))
    assert status == 201 and got["data"]["title"] == "C:\\u0000 is fine as text"
