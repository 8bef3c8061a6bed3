"""Canvases over REST: current document, document at a seq, snapshots, SVG, permissions."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

from tests.conftest import Hub, HubFactory
from tests.test_canvas import EMPTY, live_session, mark, patch, stroke

SESSIONS = "/api/v1/sessions"


def canvas_path(session_id: str, student_id: str, suffix: str = "") -> str:
    return f"{SESSIONS}/{session_id}/canvases/{student_id}{suffix}"


async def test_document_now_and_at_a_seq(make_hub: HubFactory) -> None:
    hub = await make_hub(canvas_snapshot_every=3)
    session_id, tutor, students = await live_session(hub, ("s1",))
    for n in range(5):
        await patch(students["s1"], session_id, stroke(f"e{n}"))
    await patch(tutor, session_id, mark("m"), student_id="s1")
    api = hub.as_("tutor-1", "TUTOR")
    status, got = await api.get(canvas_path(session_id, "s1"))
    assert status == 200
    data = got["data"]
    assert data["seq"] == 6 and data["epoch"] and data["student_id"] == "s1"
    assert sorted(data["doc"]["elements"]) == [f"e{n}" for n in range(5)]
    assert list(data["doc"]["annotations"]) == ["m"]
    for at in (0, 2, 4):
        status, got = await api.get(canvas_path(session_id, "s1"), at_seq=at)
        assert status == 200, got
        assert got["data"]["seq"] == at
        assert sorted(got["data"]["doc"]["elements"]) == [f"e{n}" for n in range(at)]
    status, got = await api.get(canvas_path(session_id, "s1"), at_seq=7)
    assert (status, got["errorCode"]) == (404, "SEQ_NOT_FOUND")
    status, got = await api.get(canvas_path(session_id, "s1"), at_seq=-1)
    assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR")
    # Past what a 64-bit column holds: a validation error, not a database overflow
    # (issue 19, finding 4).
    for huge in (2**63, 99999999999999999999):
        status, got = await api.get(canvas_path(session_id, "s1"), at_seq=huge)
        assert (status, got["errorCode"]) == (422, "VALIDATION_ERROR"), huge
    status, got = await api.get(canvas_path(session_id, "s1"), at_seq=2**63 - 1)
    assert (status, got["errorCode"]) == (404, "SEQ_NOT_FOUND")


async def test_snapshot_history(make_hub: HubFactory) -> None:
    hub = await make_hub(canvas_snapshot_every=2)
    session_id, _, students = await live_session(hub, ("s1",))
    for n in range(5):
        await patch(students["s1"], session_id, stroke(f"e{n}"))
    # Leaving compacts: a snapshot at the last seq.
    await students["s1"].call("session:leave", {"session_id": session_id})
    status, got = await hub.as_("tutor-1", "TUTOR").get(canvas_path(session_id, "s1", "/snapshots"))
    assert status == 200
    # Newest first: the one leaving took (5), then those taken on the way (every 2
    # patches or so, see canvas.store_sequenced.SNAPSHOT_SHARE).
    seqs = [s["seq"] for s in got["data"]]
    assert seqs[0] == 5 and len(seqs) >= 2 and seqs == sorted(set(seqs), reverse=True)
    assert got["pagination"]["total"] == len(seqs)
    assert all(s["epoch"] and s["created_at"] for s in got["data"])


async def test_a_growing_canvas_is_snapshotted_less_often_as_it_grows(
    make_hub: HubFactory,
) -> None:
    """A snapshot every N patches would write the whole, growing document again and
    again (30 snapshots here, of 930 strokes in all, 15.5 times the 60 written); after
    about the document's size in new ops, the snapshots stay within a few times the
    ops written."""
    hub = await make_hub(canvas_snapshot_every=2)
    session_id, _, students = await live_session(hub, ("s1",))
    for n in range(60):
        await patch(students["s1"], session_id, stroke(f"e{n:02}"))
    status, got = await hub.as_("tutor-1", "TUTOR").get(
        canvas_path(session_id, "s1", "/snapshots"), limit=100
    )
    assert status == 200
    seqs = sorted(s["seq"] for s in got["data"])
    assert seqs[0] in (2, 3) and len(seqs) <= 10, seqs
    # Every stroke is the same size: a snapshot at seq k holds k of them.
    assert sum(seqs) <= 3 * 60, seqs
    assert all(b - a >= 2 for a, b in itertools.pairwise(seqs)), seqs


async def test_svg_rendering(hub: Hub) -> None:
    session_id, tutor, students = await live_session(hub, ("s1",))
    await patch(students["s1"], session_id, stroke("e1", n=4))
    await patch(tutor, session_id, mark("m1"), student_id="s1")
    async with hub.http.get(
        hub.url + canvas_path(session_id, "s1", "/svg"),
        headers={"Authorization": f"Bearer {hub.tokens('tutor-1', 'TUTOR')}"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("image/svg+xml")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Canvas-Seq"] == "2"
        root = ET.fromstring(await resp.text())
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert root.find(f".//{ns}g[@class='elements']/{ns}polyline") is not None
    assert root.find(f".//{ns}g[@class='annotations']/{ns}text") is not None


async def test_who_may_read_a_canvas(hub: Hub) -> None:
    session_id, _, students = await live_session(hub)
    await patch(students["s1"], session_id, stroke("e1"))
    path = canvas_path(session_id, "s1")
    for sub, role in (
        ("tutor-1", "TUTOR"),
        ("sup", "SUPERVISOR"),
        ("adm", "CENTER_ADMIN"),
        ("s1", "STUDENT"),
    ):
        status, got = await hub.as_(sub, role).get(path)
        assert status == 200, (role, got)
        assert got["data"]["seq"] == 1
    for sub, role, code in (
        ("s2", "STUDENT", 403),
        ("tutor-2", "TUTOR", 403),
        ("p1", "PARENT", 403),
    ):
        status, got = await hub.as_(sub, role).get(path)
        assert (status, got["errorCode"]) == (code, "FORBIDDEN"), role
    for suffix in ("", "/svg", "/snapshots"):
        status, got = await hub.as_("adm", "CENTER_ADMIN", "c2").get(
            canvas_path(session_id, "s1", suffix)
        )
        assert (status, got["errorCode"]) == (404, "SESSION_NOT_FOUND")
    status, got = await hub.as_("tutor-1", "TUTOR").get(canvas_path(session_id, "nobody"))
    assert (status, got["errorCode"]) == (404, "ENROLLMENT_NOT_FOUND")


async def test_an_untouched_canvas_is_empty(hub: Hub) -> None:
    session_id, _, _ = await live_session(hub, ("s1",))
    status, got = await hub.as_("tutor-1", "TUTOR").get(canvas_path(session_id, "s1"))
    assert status == 200
    assert (got["data"]["seq"], got["data"]["doc"]) == (0, EMPTY)
