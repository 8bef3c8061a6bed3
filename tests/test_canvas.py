"""Live canvases against a real hub: seq and acks, relay and isolation, refusals, recovery."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.conftest import Hub, HubFactory
from tests.support import Client, eventually, session_body

SESSIONS = "/api/v1/sessions"
EMPTY = {"elements": {}, "annotations": {}, "meta": {}}


def stroke(element_id: str, n: int = 3, **extra: Any) -> list[dict[str, Any]]:
    points = [[i, i * 2] for i in range(n)]
    return [
        {
            "op": "add",
            "path": f"/elements/{element_id}",
            "value": {"type": "stroke", "points": points, **extra},
        }
    ]


def mark(annotation_id: str) -> list[dict[str, Any]]:
    return [
        {
            "op": "add",
            "path": f"/annotations/{annotation_id}",
            "value": {"type": "text", "x": 1, "y": 2, "text": "check this"},
        }
    ]


async def new_session(hub: Hub, students: tuple[str, ...]) -> str:
    """A session of tutor-1's with ``students`` enrolled; its id."""
    tutor_api = hub.as_("tutor-1", "TUTOR")
    status, created = await tutor_api.post(SESSIONS, session_body("tutor-1"))
    assert status == 201
    session_id: str = created["data"]["id"]
    for student in students:
        status, _ = await tutor_api.post(
            f"{SESSIONS}/{session_id}/enrollments", {"student_id": student}
        )
        assert status == 201
    return session_id


async def live_session(
    hub: Hub, students: tuple[str, ...] = ("s1", "s2")
) -> tuple[str, Client, dict[str, Client]]:
    """A session with its tutor and students joined."""
    session_id = await new_session(hub, students)
    tutor = await hub.connect("tutor-1", "TUTOR")
    assert (await tutor.join(session_id))["ok"]
    clients = {}
    for student in students:
        clients[student] = await hub.connect(student, "STUDENT")
        assert (await clients[student].join(session_id))["ok"]
    return session_id, tutor, clients


async def patch(client: Client, session_id: str, ops: Any, **extra: Any) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(
        "canvas:patch", {"session_id": session_id, "ops": ops, **extra}
    )
    return ack


def relayed(client: Client, student_id: str | None = None) -> list[dict[str, Any]]:
    return [
        item
        for event in client.events("canvas:patches")
        for item in event["items"]
        if student_id is None or item["student_id"] == student_id
    ]


async def canvas_state(client: Client, session_id: str, student_id: str) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(
        "canvas:sync", {"session_id": session_id, "student_id": student_id, "since": 0}
    )
    assert ack["ok"], ack
    return ack


async def test_patches_are_acked_with_gap_free_seq_and_reach_the_tutor_in_order(
    hub: Hub,
) -> None:
    session_id, tutor, students = await live_session(hub)
    acks = {name: [] for name in students}

    async def draw(name: str) -> None:
        for n in range(10):
            ack = await patch(students[name], session_id, stroke(f"{name}-{n}"), client_ref=n)
            assert ack["ok"], ack
            acks[name].append((ack["seq"], ack["client_ref"]))

    await asyncio.gather(*(draw(name) for name in students))
    for name in students:
        assert acks[name] == [(n + 1, n) for n in range(10)]
        items = await eventually(
            lambda name=name: len(relayed(tutor, name)) == 10 and relayed(tutor, name),
            what=f"{name}'s patches at the tutor",
        )
        assert [i["seq"] for i in items] == list(range(1, 11))
        assert all(i["author"] == "student" for i in items)
        assert [i["ops"][0]["path"] for i in items] == [f"/elements/{name}-{n}" for n in range(10)]
    state = await canvas_state(tutor, session_id, "s1")
    assert state["seq"] == 10 and len(state["ops"]) == 10


async def test_students_never_see_each_other_and_annotations_reach_only_their_student(
    hub: Hub,
) -> None:
    session_id, tutor, students = await live_session(hub)
    assert (await patch(students["s1"], session_id, stroke("a")))["ok"]
    assert (await patch(students["s2"], session_id, stroke("b")))["ok"]
    ack = await patch(tutor, session_id, mark("m1"), student_id="s1")
    assert ack == {"ok": True, "seq": 2}
    got = await eventually(lambda: relayed(students["s1"]), what="annotation at s1")
    assert [(i["student_id"], i["seq"], i["author"]) for i in got] == [("s1", 2, "tutor")]
    await eventually(lambda: len(relayed(tutor)) == 3, what="all three at the tutor")
    assert relayed(students["s2"]) == []
    # s1 never received its own patch back on the socket that sent it.
    assert [i["seq"] for i in relayed(students["s1"])] == [2]


async def test_a_students_other_tab_gets_its_own_patches(hub: Hub) -> None:
    session_id, _, students = await live_session(hub, ("s1",))
    second_tab = await hub.connect("s1", "STUDENT")
    await second_tab.join(session_id)
    assert (await patch(students["s1"], session_id, stroke("a")))["ok"]
    got = await eventually(lambda: relayed(second_tab), what="echo to the other tab")
    assert [(i["seq"], i["author"]) for i in got] == [(1, "student")]


async def test_element_rules_remove_of_missing_is_a_noop_and_add_replaces(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    s1 = students["s1"]
    assert (await patch(s1, session_id, stroke("a", color="red")))["seq"] == 1
    assert (await patch(s1, session_id, stroke("a", color="blue")))["seq"] == 2
    assert (await patch(s1, session_id, [{"op": "remove", "path": "/elements/ghost"}]))["seq"] == 3
    state = await canvas_state(tutor, session_id, "s1")
    assert state["ops"][2]["ops"] == []  # the no-op is relayed as an empty patch
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 99}
    )
    assert sync["doc"]["elements"]["a"]["color"] == "blue"


@pytest.mark.parametrize(
    ("ops", "code"),
    [
        ([{"op": "add", "path": "/annotations/x", "value": 1}], "FORBIDDEN"),
        ([{"op": "add", "path": "/elements", "value": {}}], "FORBIDDEN"),
        ([{"op": "add", "path": "", "value": {}}], "FORBIDDEN"),
        ([{"op": "add", "path": "/secret/x", "value": 1}], "FORBIDDEN"),
        ([{"op": "move", "from": "/annotations/x", "path": "/elements/y"}], "FORBIDDEN"),
        ([{"op": "explode", "path": "/elements/x"}], "VALIDATION_ERROR"),
        ([{"op": "add", "path": "/elements/x"}], "VALIDATION_ERROR"),
        ([{"op": "add", "path": "elements/x", "value": 1}], "VALIDATION_ERROR"),
        ([], "VALIDATION_ERROR"),
        ("not a list", "VALIDATION_ERROR"),
        ([{"op": "replace", "path": "/elements/missing/color", "value": 1}], "CONFLICT"),
        ([{"op": "test", "path": "/elements/a", "value": {"type": "nope"}}], "CONFLICT"),
        # The second op fails, so the first must not stick either.
        ([*stroke("new"), {"op": "remove", "path": "/elements/missing/points"}], "CONFLICT"),
    ],
)
async def test_refused_patches_change_nothing(hub: Hub, ops: Any, code: str) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    s1 = students["s1"]
    assert (await patch(s1, session_id, stroke("a")))["seq"] == 1
    before = await canvas_state(tutor, session_id, "s1")
    ack = await patch(s1, session_id, ops)
    assert ack["ok"] is False and ack["error"]["code"] == code, ack
    assert (await patch(s1, session_id, stroke("b")))["seq"] == 2
    after = await canvas_state(tutor, session_id, "s1")
    assert after["ops"][:1] == before["ops"]
    # Patches reach the tutor in seq order: once "b" is there, so is everything before it.
    await eventually(lambda: any(i["seq"] == 2 for i in relayed(tutor, "s1")), what="b relayed")
    got = [(i["seq"], [op["path"] for op in i["ops"]]) for i in relayed(tutor, "s1")]
    assert got == [(1, ["/elements/a"]), (2, ["/elements/b"])]


async def test_who_may_patch_what(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub)
    observer = await hub.connect("sup", "SUPERVISOR")
    await observer.join(session_id)
    outsider = await hub.connect("s3", "STUDENT")
    cases = [
        (students["s1"], {"student_id": "s2"}, stroke("x"), "FORBIDDEN"),
        (observer, {"student_id": "s1"}, mark("m"), "FORBIDDEN"),
        (tutor, {}, mark("m"), "VALIDATION_ERROR"),
        (tutor, {"student_id": "s9"}, mark("m"), "NOT_FOUND"),
        (tutor, {"student_id": "s1"}, stroke("x"), "FORBIDDEN"),
        (outsider, {}, stroke("x"), "NOT_JOINED"),
    ]
    for client, extra, ops, code in cases:
        ack = await patch(client, session_id, ops, **extra)
        assert ack["ok"] is False and ack["error"]["code"] == code, (extra, ack)
    for student in ("s1", "s2"):
        assert (await canvas_state(tutor, session_id, student))["seq"] == 0
    sync = await students["s1"].call(
        "canvas:sync", {"session_id": session_id, "student_id": "s2", "since": 0}
    )
    assert sync["error"]["code"] == "FORBIDDEN"


async def test_limits_refuse_with_payload_too_large(make_hub: HubFactory) -> None:
    hub = await make_hub(
        canvas_max_ops_per_patch=3,
        canvas_max_patch_bytes=2000,
        canvas_max_bytes=1500,
        canvas_max_entries=4,
    )
    session_id, tutor, students = await live_session(hub, ("s1",))
    s1 = students["s1"]
    too_many_ops = [op for n in range(4) for op in stroke(f"e{n}")]
    too_big_patch = stroke("big", n=400)
    assert (await patch(s1, session_id, too_many_ops))["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert (await patch(s1, session_id, too_big_patch))["error"]["code"] == "PAYLOAD_TOO_LARGE"
    for n in range(4):
        assert (await patch(s1, session_id, stroke(f"e{n}", n=5)))["ok"]
    ack = await patch(s1, session_id, stroke("e5"))
    assert ack["error"]["code"] == "PAYLOAD_TOO_LARGE"  # a fifth entry
    # Growing an existing entry past the canvas byte limit is refused too.
    ack = await patch(s1, session_id, stroke("e0", n=190))
    assert ack["error"]["code"] == "PAYLOAD_TOO_LARGE", ack
    state = await canvas_state(tutor, session_id, "s1")
    assert state["seq"] == 4


async def test_sync_returns_exactly_the_missing_patches_or_the_document(
    make_hub: HubFactory,
) -> None:
    hub = await make_hub(canvas_log_retention=5)
    session_id, tutor, students = await live_session(hub, ("s1",))
    for n in range(8):
        assert (await patch(students["s1"], session_id, stroke(f"e{n}")))["seq"] == n + 1
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 5}
    )
    assert [p["seq"] for p in sync["ops"]] == [6, 7, 8] and sync["seq"] == 8
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 8}
    )
    assert sync["ops"] == [] and sync["seq"] == 8
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 1}
    )
    assert "ops" not in sync and sorted(sync["doc"]["elements"]) == [f"e{n}" for n in range(8)]
    assert sync["epoch"]


async def test_the_catch_up_log_is_bounded_by_bytes_too_and_keeps_the_newest(
    make_hub: HubFactory,
) -> None:
    bound = 1024
    hub = await make_hub(canvas_log_bytes=bound)
    session_id, tutor, students = await live_session(hub, ("s1",))
    sizes = []
    for n in range(10):
        ops = stroke(f"e{n}", 40)
        sizes.append(len(orjson.dumps(ops)))
        assert (await patch(students["s1"], session_id, ops))["seq"] == n + 1
    kept = max(k for k in range(1, 11) if sum(sizes[-k:]) <= bound)
    assert 1 < kept < 10
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 10 - kept}
    )
    assert [p["seq"] for p in sync["ops"]] == list(range(11 - kept, 11))
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 9 - kept}
    )
    if len(hub.urls) > 1 and "ops" in sync:
        # Several hubs: the shared log in Redis (bounded by count) may still give them.
        assert [p["seq"] for p in sync["ops"]] == list(range(10 - kept, 11))
        sync = (await tutor.join(session_id))["canvases"]["s1"]
    assert "ops" not in sync and len(sync["doc"]["elements"]) == 10
    async with hub.http.get(hub.url + "/metrics") as resp:
        text = await resp.text()
    gauges = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert gauges["hub_canvas_log_bytes"] == sum(sizes[-kept:])
    assert gauges["hub_canvas_log_patches"] == kept
    elements = sync["doc"]["elements"]
    assert gauges["hub_canvas_document_bytes"] == sum(
        len(key) + 3 + len(orjson.dumps(value)) for key, value in elements.items()
    )

    # One patch larger than the bound is still kept: the newest is always there.
    big = stroke("big", 200)
    assert len(orjson.dumps(big)) > bound
    assert (await patch(students["s1"], session_id, big))["seq"] == 11
    sync = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 10}
    )
    assert [p["seq"] for p in sync["ops"]] == [11]


async def test_rejoin_with_since_gets_the_gap(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    for n in range(3):
        await patch(students["s1"], session_id, stroke(f"e{n}"))
    again = await hub.connect("tutor-1", "TUTOR")
    ack = await again.join(session_id, since={"s1": 1})
    assert [p["seq"] for p in ack["canvases"]["s1"]["ops"]] == [2, 3]
    ack = await again.join(session_id)
    assert sorted(ack["canvases"]["s1"]["doc"]["elements"]) == ["e0", "e1", "e2"]
    student_view = await students["s1"].join(session_id)
    assert list(student_view["canvases"]) == ["s1"]


async def test_patches_survive_a_hub_restart_on_the_same_database(make_hub: HubFactory) -> None:
    hub = await make_hub(canvas_snapshot_every=4)
    session_id, _, students = await live_session(hub, ("s1",))
    for n in range(10):
        assert (await patch(students["s1"], session_id, stroke(f"e{n}")))["ok"]
    await patch(students["s1"], session_id, [{"op": "remove", "path": "/elements/e3"}])
    await hub.stop()
    restarted = await make_hub()
    tutor = await restarted.connect("tutor-1", "TUTOR")
    ack = await tutor.join(session_id)
    canvas = ack["canvases"]["s1"]
    assert canvas["seq"] == 11
    assert sorted(canvas["doc"]["elements"]) == sorted(f"e{n}" for n in range(10) if n != 3)
    # The catch-up log is rebuilt too, across the snapshots taken every 4 patches.
    again = await restarted.connect("tutor-1", "TUTOR")
    ack = await again.join(session_id, since={"s1": 2})
    assert [p["seq"] for p in ack["canvases"]["s1"]["ops"]] == list(range(3, 12))
    student = await restarted.connect("s1", "STUDENT")
    await student.join(session_id)
    assert (await patch(student, session_id, stroke("after")))["seq"] == 12


async def test_staff_get_coalesced_batches(make_hub: HubFactory) -> None:
    hub = await make_hub(canvas_flush_interval_s=0.2)
    session_id, tutor, students = await live_session(hub, ("s1", "s2", "s3"))
    await asyncio.gather(
        *(patch(c, session_id, stroke(f"{n}-{k}")) for n, c in students.items() for k in range(3))
    )
    await eventually(lambda: len(relayed(tutor)) == 9, what="nine patches at the tutor")
    assert len(tutor.events("canvas:patches")) < 9
    for student in students:
        assert [i["seq"] for i in relayed(tutor, student)] == [1, 2, 3]


async def test_a_failed_write_refuses_the_patch_and_the_canvas_reloads(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    s1 = students["s1"]
    assert (await patch(s1, session_id, stroke("kept")))["seq"] == 1
    engine = hub.engine
    async with engine.begin() as conn:  # make the op log unwritable, for real
        await conn.execute(text("ALTER TABLE canvas_ops RENAME TO canvas_ops_away"))
    try:
        ack = await patch(s1, session_id, stroke("lost"))
        assert ack["ok"] is False and ack["error"]["code"] == "INTERNAL", ack
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE canvas_ops_away RENAME TO canvas_ops"))
    # The refused patch never existed: seq 2 is given again, and nobody saw "lost".
    assert (await patch(s1, session_id, stroke("next")))["seq"] == 2
    state = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 99}
    )
    assert sorted(state["doc"]["elements"]) == ["kept", "next"]
    await eventually(lambda: len(relayed(tutor, "s1")) == 2, what="two relays")
    assert [i["ops"][0]["path"] for i in relayed(tutor, "s1")] == [
        "/elements/kept",
        "/elements/next",
    ]


async def test_snapshots_after_an_interval_and_when_the_session_ends(make_hub: HubFactory) -> None:
    hub = await make_hub(canvas_snapshot_interval_s=0.1, canvas_snapshot_every=1000)
    session_id, _, students = await live_session(hub, ("s1",))
    await patch(students["s1"], session_id, stroke("a"))
    api = hub.as_("tutor-1", "TUTOR")
    snapshots = f"{SESSIONS}/{session_id}/canvases/s1/snapshots"

    async def snapshot_seqs() -> list[int]:
        status, got = await api.get(snapshots)
        assert status == 200
        return [s["seq"] for s in got["data"]]

    await eventually(lambda: snapshot_seqs(), what="a timed snapshot")
    # Every hub holding a replica of the canvas may write the same timed snapshot (the
    # student and the tutor on two hubs); one row is kept per position.
    assert await snapshot_seqs() == [1]
    await patch(students["s1"], session_id, stroke("b"))
    await api.post(f"{SESSIONS}/{session_id}/end")
    assert (await snapshot_seqs())[0] == 2


async def test_canvas_metrics(hub: Hub) -> None:
    session_id, _, students = await live_session(hub, ("s1",))
    await patch(students["s1"], session_id, stroke("a"))
    await patch(students["s1"], session_id, [{"op": "add", "path": "/annotations/x", "value": 1}])
    node = students["s1"].url  # the student's hub (in a cluster, not the tutor's)
    async with hub.http.get(node + "/metrics") as resp:
        text_body = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text_body)
        for s in family.samples
    }
    assert samples[("hub_events_total", (("event", "canvas:patch"), ("outcome", "ok")))] == 1
    assert samples[("hub_events_total", (("event", "canvas:patch"), ("outcome", "FORBIDDEN")))] == 1
    assert samples[("hub_canvas_apply_seconds_count", ())] == 1
    assert samples[("hub_canvas_commit_seconds_count", ())] >= 1
    assert samples[("hub_canvas_commit_batch_size_sum", ())] >= 1
    assert samples[("hub_canvas_log_patches", ())] == 1
    await eventually(lambda: relayed_count(hub, node), what="relay metrics")


async def relayed_count(hub: Hub, node: str) -> bool:
    async with hub.http.get(node + "/metrics") as resp:
        body = await resp.text()
    return "hub_canvas_relay_batch_size_count 1.0" in body and (
        "hub_canvas_relay_seconds_count 1.0" in body
    )


async def test_a_class_back_within_the_grace_period_finds_its_canvases_kept(
    make_hub: HubFactory,
) -> None:
    """A network blip (everyone drops and comes back within the presence grace
    period) stores nothing; staying away past it stores the canvases."""
    hub = await make_hub(presence_grace_s=1.0, canvas_snapshot_every=1000)

    # All on one hub, also in a cluster.
    async def connect(sub: str, role: str, session: str = "") -> Client:
        client = await Client().connect(hub.url, hub.tokens(sub, role))
        hub.clients.append(client)
        assert (await client.join(session or session_id))["ok"]
        return client

    api = hub.as_("tutor-1", "TUTOR")
    session_id = await new_session(hub, ("s1",))
    tutor, student = await connect("tutor-1", "TUTOR"), await connect("s1", "STUDENT")
    assert (await patch(student, session_id, stroke("a")))["seq"] == 1

    async def snapshot_seqs(session: str = "", student_id: str = "s1") -> list[int]:
        snapshots = f"{SESSIONS}/{session or session_id}/canvases/{student_id}/snapshots"
        status, got = await api.get(snapshots)
        assert status == 200
        return [s["seq"] for s in got["data"]]

    for client in (tutor, student):
        await client.sio.disconnect()
    tutor, student = await connect("tutor-1", "TUTOR"), await connect("s1", "STUDENT")
    ack = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 0}
    )
    assert [p["seq"] for p in ack["ops"]] == [1], ack
    assert (await patch(student, session_id, stroke("b")))["seq"] == 2
    # Another class leaves for good after this one came back: the hub stores its
    # canvas once the grace period after it left is over. Had this class's rejoin
    # not kept its canvases, the hub's wait for this class (begun earlier) would have
    # ended first and queued its snapshot ahead, in the same commit or an earlier one.
    other_id = await new_session(hub, ("s2",))
    other = await connect("s2", "STUDENT", other_id)
    assert (await patch(other, other_id, stroke("c")))["seq"] == 1
    await other.sio.disconnect()

    async def other_stored() -> bool:
        return await snapshot_seqs(other_id, "s2") == [1]

    await eventually(other_stored, within=5, what="the other class's canvas stored")
    assert await snapshot_seqs() == []  # past the grace period, with everyone back: nothing

    for client in (tutor, student):
        await client.sio.disconnect()
    await eventually(snapshot_seqs, within=5, what="the canvas stored after the grace period")
    assert await snapshot_seqs() == [2]


async def test_a_hub_that_kept_canvases_serves_what_other_hubs_wrote_meanwhile(
    make_hub: HubFactory,
) -> None:
    """The class leaves hub A (which keeps the canvases through the grace period),
    the student goes on drawing on hub B, and the tutor comes back to A: A answers
    with B's patches, and the student's next patch on A follows them."""
    hub = await make_hub(presence_grace_s=10.0)
    hub_a, hub_b = hub.url, (hub.urls or [hub.url])[-1]

    async def connect(url: str, sub: str, role: str) -> Client:
        client = await Client().connect(url, hub.tokens(sub, role))
        hub.clients.append(client)
        assert (await client.join(session_id))["ok"]
        return client

    session_id = await new_session(hub, ("s1",))
    tutor, student = await connect(hub_a, "tutor-1", "TUTOR"), await connect(hub_a, "s1", "STUDENT")
    assert (await patch(student, session_id, stroke("a")))["seq"] == 1
    for client in (tutor, student):
        await client.sio.disconnect()

    elsewhere = await connect(hub_b, "s1", "STUDENT")
    assert [(await patch(elsewhere, session_id, stroke(e)))["seq"] for e in "bc"] == [2, 3]
    tutor = await connect(hub_a, "tutor-1", "TUTOR")
    ack = await tutor.join(session_id, since={"s1": 1})
    assert [p["seq"] for p in ack["canvases"]["s1"]["ops"]] == [2, 3], ack
    await elsewhere.sio.disconnect()
    student = await connect(hub_a, "s1", "STUDENT")
    assert (await patch(student, session_id, stroke("d")))["seq"] == 4
    state = await tutor.call(
        "canvas:sync", {"session_id": session_id, "student_id": "s1", "since": 99}
    )
    assert sorted(state["doc"]["elements"]) == ["a", "b", "c", "d"], state
