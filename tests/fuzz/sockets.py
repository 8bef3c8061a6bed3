"""Socket.IO events and raw frames: batches sent from one socket, and their checks."""

from __future__ import annotations

import random
from typing import Any

from realtime.base.identity import Role
from tests.fuzz.values import Payload
from tests.fuzz.world import (
    ACTORS,
    ERROR_CODES,
    MAX_MESSAGE_BYTES,
    WAIT_S,
    Finding,
    Wire,
    World,
    diff,
    event_text,
    strict,
)

# -- socket events ------------------------------------------------------------------


def bases(world: World, actor: str, event: str, rng: random.Random) -> dict[str, Any]:
    """A valid-looking payload of ``event`` for ``actor``."""
    center = ACTORS[actor][2]
    sid = world.sessions[center]
    student = rng.choice(["s1", "s2", "s9"])
    own = ACTORS[actor][0]
    pick = lambda kind: rng.choice(world.ids[kind] or ["missing"])  # noqa: E731
    element = rng.choice(["a", "b", "c"])
    if event == "session:join":
        return {"session_id": sid, "since": {student: rng.randint(0, 5)}}
    if event in ("session:leave", "session:end"):
        return {"session_id": sid if event == "session:leave" else "not-this-one"}
    if event == "auth:refresh":
        return {"token": world.token(actor)}
    if event == "canvas:patch":
        if ACTORS[actor][1] == Role.STUDENT:
            path = rng.choice([f"/elements/{element}", "/meta/title"])
            return {"session_id": sid, "ops": [{"op": "add", "path": path, "value": {"n": 1}}]}
        ops = [{"op": "add", "path": f"/annotations/{element}", "value": {"type": "note"}}]
        return {"session_id": sid, "student_id": student, "ops": ops, "client_ref": "r1"}
    if event == "canvas:sync":
        return {
            "session_id": sid,
            "student_id": own if own.startswith("s") else student,
            "since": 0,
        }
    if event == "presence:ping":
        return {"session_id": sid, "state": rng.choice(["active", "idle"]), "focused": True}
    if event == "mode:set":
        return {"session_id": sid, "student_id": student, "mode": rng.choice(["TEACH", "OBSERVE"])}
    if event == "exercise:assign":
        exercise = {"id": "ex-1", "title": "Fractions", "level": rng.randint(1, 3)}
        return {"session_id": sid, "student_id": student, "exercise": exercise}
    if event == "exercise:progress":
        return {"session_id": sid, "exercise_id": "ex-1", "progress_pct": rng.randint(0, 100)}
    if event == "note:add":
        return {"session_id": sid, "student_id": student, "text": "good", "visibility": "PRIVATE"}
    if event == "help:request":
        priority = rng.choice(["LOW", "NORMAL", "HIGH", "URGENT"])
        return {"session_id": sid, "message": "stuck", "priority": priority, "exercise_id": "e"}
    if event == "help:update":
        status = rng.choice(["IN_PROGRESS", "RESOLVED", "CANCELLED"])
        return {"session_id": sid, "help_id": pick("help"), "status": status, "response": "ok"}
    if event == "timer:start":
        return {"session_id": sid, "label": "quiz", "duration_s": 600, "warn_before_s": 60}
    if event == "timer:cancel":
        return {"session_id": sid, "timer_id": pick("timer")}
    assert event == "announcement:send", event
    return {"session_id": sid, "text": "listen", "student_id": student}


def ack_of(text_: str, payload: Payload, actor: str) -> dict[str, Any]:
    decoded = strict(text_, f"{actor}'s ack for {payload.event} ({payload.kind})")
    if not isinstance(decoded, list) or len(decoded) != 1 or not isinstance(decoded[0], dict):
        raise Finding(f"ack is not one object: {text_[:300]} for {payload.text[:300]}")
    ack: dict[str, Any] = decoded[0]
    if ack.get("ok") is True:
        if payload.must_refuse:
            raise Finding(f"{actor}: accepted what the contract refuses: {payload.text[:500]}")
        return ack
    code = ack.get("error", {}).get("code") if ack.get("ok") is False else None
    if code not in ERROR_CODES:
        raise Finding(f"{actor}: ack {text_[:500]} for {payload.event}: {payload.text[:500]}")
    return ack


async def socket_batch(world: World, actor: str, payloads: list[Payload], compare: bool) -> None:
    """Send ``payloads`` from ``actor``'s socket, all in flight at once; check each ack,
    the log, and (``compare``) that a batch refused throughout changed nothing."""
    await world.rejoin(actor)
    before = await world.fingerprint() if compare else None
    wire = world.wires[actor]
    ids: dict[int, Payload] = {}
    for payload in payloads:
        n = world.take_id()
        ids[n] = payload
        if payload.attachments:
            await wire.ws.send_str(f"45{len(payload.attachments)}-{n}{payload.text}")
            for blob in payload.attachments:
                await wire.ws.send_bytes(blob)
        else:
            await wire.ws.send_str(f"42{n}{payload.text}")
    acks, closed = await wire.collect(set(ids))
    accepted = False
    # Only a message over HUB_MAX_MESSAGE_BYTES may close the connection (and lose the
    # acks of the batch's other payloads).
    oversized = any(len(p.text.encode()) > MAX_MESSAGE_BYTES for p in payloads)
    for n, payload in ids.items():
        if n not in acks:
            if not oversized:
                raise Finding(f"{actor}: closed with no ack for {payload.text[:500]}")
            world.tally.add(payload.event, "closed")
            continue
        ack = ack_of(acks[n], payload, actor)
        outcome = "ok" if ack["ok"] else ack["error"]["code"]
        world.tally.add(payload.event, outcome)
        if ack["ok"]:
            accepted = True
            remember(world, ack)
    if closed:
        world.tally.closed += 1
    world.check_log(f"{actor}'s batch of {[p.event for p in payloads]}")
    if before is not None and not accepted:
        after = await world.fingerprint()
        if after != before:
            raise Finding(
                f"a refused batch changed the state ({actor}): "
                f"{[p.text[:200] for p in payloads]}\n{diff(before, after)}"
            )
        world.tally.compared += 1


def remember(world: World, ack: dict[str, Any]) -> None:
    for kind in ("help_request", "timer"):
        if isinstance(ack.get(kind), dict) and "id" in ack[kind]:
            world.ids[kind.split("_")[0]].append(ack[kind]["id"])


async def raw_batch(world: World, frames: list[str | bytes]) -> None:
    """Raw frames on a fresh socket: each gets an error ack, or the hub closes the
    connection; then the hub still answers others, and logs nothing."""
    wire = await Wire.connect(world.http, world.hub.url, world.token("student"))
    try:
        for frame in frames:
            if isinstance(frame, bytes):
                await wire.ws.send_bytes(frame)
            else:
                await wire.ws.send_str(frame)
            world.tally.add("raw frame", "sent")
        n = world.take_id()
        ping = event_text("presence:ping", {"session_id": "nope", "state": "active"})
        await wire.ws.send_str(f"42{n}{ping}")
        # After a Socket.IO disconnect ("41") the socket has left the namespace: the hub
        # rightly drops its later events, as python-socketio does.
        # So after an Engine.IO close ("1"): the hub answers nothing more and closes the
        # websocket only at the ping timeout (45 s by default; noted in docs/reliability.md).
        left = any(isinstance(f, str) and f.startswith(("41", "1")) for f in frames)
        try:
            acks, closed = await wire.collect({n}, within=2.0 if left else WAIT_S)
        except Finding:
            if not left:
                raise
            acks, closed = {}, False
        if closed:
            world.tally.closed += 1
        else:
            for ack_id, text_ in acks.items():
                strict(text_, f"ack {ack_id} after raw frames {frames!r:.300}")
    finally:
        await wire.ws.close()
    await world.rejoin("tutor")  # the others are untouched
    world.check_log(f"raw frames {frames!r:.500}")
