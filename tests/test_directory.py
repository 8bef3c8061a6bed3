"""The directory of people over REST: filled from tokens (REST and sockets) and imports;
parents linked to their children. A real hub on loopback, on both databases."""

from __future__ import annotations

from sqlalchemy import func, select

from persistence.models import AuditEntry, Person
from tests.conftest import Hub

PEOPLE = "/api/v1/people"


def children(parent: str, student: str | None = None) -> str:
    path = f"{PEOPLE}/{parent}/children"
    return f"{path}/{student}" if student else path


async def test_a_verified_caller_is_in_the_directory_before_their_request_is_served(
    hub: Hub,
) -> None:
    tutor = hub.as_("tutor-1", "TUTOR", name="Tomás", email="tomas@center.example")
    # The tutor's very first request can already find them.
    status, got = await tutor.get(f"{PEOPLE}/tutor-1")
    assert status == 200, got
    assert got["data"]["full_name"] == "Tomás"
    assert got["data"]["email_address"] == "tomas@center.example"
    assert got["data"]["role"] == "TUTOR" and got["data"]["source"] == "TOKEN"
    assert got["data"]["first_seen_at"].endswith("Z")  # UTC, as every hub time


async def test_a_socket_connect_records_the_student(hub: Hub) -> None:
    await hub.connect("s1", "STUDENT", name="Ada")
    status, got = await hub.as_("admin", "CENTER_ADMIN").get(PEOPLE, role="STUDENT")
    assert status == 200
    assert [(p["user_id"], p["full_name"]) for p in got["data"]] == [("s1", "Ada")]


async def test_each_center_sees_its_own_people_only(hub: Hub) -> None:
    await hub.as_("s1", "STUDENT", center="c1", name="Ada").get(f"{PEOPLE}/s1")
    await hub.as_("s9", "STUDENT", center="c2", name="Zed").get(f"{PEOPLE}/s9")
    status, got = await hub.as_("admin", "CENTER_ADMIN", center="c1").get(PEOPLE, role="STUDENT")
    assert [p["user_id"] for p in got["data"]] == ["s1"]
    status, got = await hub.as_("admin", "CENTER_ADMIN", center="c1").get(f"{PEOPLE}/s9")
    assert status == 404 and got["errorCode"] == "PERSON_NOT_FOUND"
    # An admin of c1 may not name another center; a super admin may.
    status, got = await hub.as_("admin", "CENTER_ADMIN").get(PEOPLE, center_id="c2")
    assert status == 403
    status, got = await hub.as_("root", "SUPER_ADMIN").get(PEOPLE, center_id="c2")
    assert status == 200 and [p["user_id"] for p in got["data"]] == ["s9"]


async def test_students_and_parents_read_themselves_not_the_directory(hub: Hub) -> None:
    student = hub.as_("s1", "STUDENT")
    assert (await student.get(f"{PEOPLE}/s1"))[0] == 200
    status, got = await student.get(PEOPLE)
    assert status == 403 and got["errorCode"] == "FORBIDDEN"
    assert (await hub.as_("p1", "PARENT").get(PEOPLE))[0] == 403
    assert (await student.get(f"{PEOPLE}/tutor-1"))[0] == 403


async def test_an_import_is_all_or_nothing_and_audited(hub: Hub) -> None:
    admin = hub.as_("admin", "CENTER_ADMIN")
    bad = {
        "people": [
            {"user_id": "new-1", "role": "STUDENT", "full_name": "Bea"},
            {"user_id": "new-2", "role": "WIZARD"},
        ]
    }
    status, got = await admin.post(f"{PEOPLE}/import", bad)
    assert status == 422 and got["errorCode"] == "VALIDATION_ERROR"
    twice = {"people": [{"user_id": "x", "role": "STUDENT"}, {"user_id": "x", "role": "TUTOR"}]}
    status, got = await admin.post(f"{PEOPLE}/import", twice)
    assert status == 422 and got["details"] == {"user_ids": ["x"]}
    async with hub.db() as db:
        assert (
            await db.scalar(
                select(func.count())
                .select_from(Person)
                .where(Person.user_id.in_(["new-1", "new-2", "x"]))
            )
            == 0
        )
    good = {
        "people": [
            {"user_id": "new-1", "role": "STUDENT", "full_name": "Bea", "email_address": "b@x.org"},
            {"user_id": "admin", "role": "TUTOR", "full_name": "Not me"},
        ]
    }
    status, got = await admin.post(f"{PEOPLE}/import", good)
    assert status == 200 and got["data"] == {"created": 1, "updated": 1}
    status, got = await admin.get(f"{PEOPLE}/new-1")
    assert got["data"]["source"] == "IMPORT" and got["data"]["first_seen_at"] is None
    # The admin signed in: the import does not change what their token said.
    status, got = await admin.get(f"{PEOPLE}/admin")
    assert got["data"]["role"] == "CENTER_ADMIN"
    async with hub.db() as db:
        entry = await db.scalar(select(AuditEntry).where(AuditEntry.action == "people.import"))
    assert entry is not None and entry.actor_id == "admin" and entry.center_id == "c1"
    assert (await hub.as_("tutor-1", "TUTOR").post(f"{PEOPLE}/import", good))[0] == 403


async def test_a_parent_reads_only_their_own_linked_children(hub: Hub) -> None:
    admin = hub.as_("admin", "CENTER_ADMIN")
    await hub.as_("s1", "STUDENT", name="Ada").get(f"{PEOPLE}/s1")
    await hub.as_("s2", "STUDENT").get(f"{PEOPLE}/s2")
    parent = hub.as_("p1", "PARENT")
    await parent.get(f"{PEOPLE}/p1")
    status, got = await admin.post(children("p1"), {"student_id": "s1"})
    assert status == 201, got
    status, got = await admin.post(children("p1"), {"student_id": "s1"})
    assert status == 409 and got["errorCode"] == "ALREADY_LINKED"
    # Only a parent can be linked, only to a student, both of the center.
    status, got = await admin.post(children("s2"), {"student_id": "s1"})
    assert status == 422
    status, got = await admin.post(children("p1"), {"student_id": "nobody"})
    assert status == 404
    status, got = await parent.get(children("p1"))
    assert status == 200 and got["data"] == [{"student_id": "s1", "full_name": "Ada"}]
    assert (await hub.as_("p2", "PARENT").get(children("p1")))[0] == 403
    # Regression: a parent the center does not know (another center's) was an empty
    # list; it is not found, as in GET /people/{user_id}.
    status, got = await admin.get(children("nobody"))
    assert status == 404 and got["errorCode"] == "PERSON_NOT_FOUND"
    status, got = await hub.as_("admin", "CENTER_ADMIN", center="c2").get(children("p1"))
    assert status == 404 and got["errorCode"] == "PERSON_NOT_FOUND"
    assert (await admin.get(children("s1")))[0] == 422
    assert (await parent.post(children("p1"), {"student_id": "s2"}))[0] == 403
    assert (await admin.delete(children("p1", "s1")))[0] == 204
    assert (await admin.delete(children("p1", "s1")))[0] == 404
    status, got = await parent.get(children("p1"))
    assert got["data"] == []
