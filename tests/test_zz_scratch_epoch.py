import asyncio
from tests.conftest import Hub
from tests.support import eventually, session_body


async def test_nul(hub: Hub) -> None:
    api = hub.as_("tutor-1", "TUTOR")
    _, created = await api.post("/api/v1/sessions", session_body("tutor-1"))
    sid = created["data"]["id"]
    for s in ("s1", "s2"):
        await api.post(f"/api/v1/sessions/{sid}/enrollments", {"student_id": s})
    tutor = await hub.connect("tutor-1", "TUTOR")
    await tutor.join(sid)
    s1 = await hub.connect("s1", "STUDENT"); await s1.join(sid)
    s2 = await hub.connect("s2", "STUDENT"); await s2.join(sid)
    a, b = await asyncio.gather(
        s1.call("canvas:patch", {"session_id": sid, "ops": [{"op": "add", "path": "/elements/a", "value": {"t": "x\x00y"}}]}),
        s2.call("canvas:patch", {"session_id": sid, "ops": [{"op": "add", "path": "/elements/b", "value": {"t": "ok"}}]}),
    )
    print("ACKS", a, b)
    c = await s1.call("canvas:patch", {"session_id": sid, "ops": [{"op": "add", "path": "/elements/c", "value": 1}]})
    print("AFTER", c)
