"""The tenancy soak (issue 19): centers, sessions and every role at once; who saw what.

Each of ``centers`` centers (``ctr0``, ``ctr1``, ...) has, over REST:

    S0  tutor ta, students st01 st02 st03
    S1  tutor ta, students st03 st04          (ta tutors two sessions)
    S2  tutor tb, students st05 st06 st01     (st01 is in S0 and S2)

and these connections, each on a hub in turn (``urls``), every one listening to
every hub -> client event (``WireClient.on_any``):

    ta (S0, S1), tb (S2), tc (a tutor of no session: refused), admin (CENTER_ADMIN:
    S0-S2), sup (SUPERVISOR: S1), assessor and parent (refused), st01 on two tabs
    (S0, S2, the tabs on two hubs when there are two), st02 (S0), st03 (S0, S1),
    st04 (S1, leaves and re-joins all the time), st05 st06 (S2), st07 (enrolled
    nowhere: refused); and one SUPER_ADMIN (``ctr0-root``) observing every S0.

Tutors annotate, set modes, assign exercises, add notes of each visibility,
take and resolve help, start and cancel (2 s) timers and announce to the session
or one student; students draw, ping presence, report progress, ask for help and
cancel it; observers sync canvases. Everyone also tries what they may not: a
student patching another's canvas, cancelling another's help, joining a session
they are not enrolled in or another center's; an observer annotating or
announcing; an admin joining another center's session; the refused roles
joining and syncing. Such an attempt acked ``ok`` is ``refusals_accepted``.

Halfway through, each center's ta ends S1 and tb removes st06 from S2 over REST;
from then on the actors of those sessions only try to join them again (refused).
Every actor also refreshes its token now and then, and tries another user's.

Every event received and every join ack goes through ``loadtest.tenancy_oracle``;
the run ends after ``events`` client -> hub events or ``seconds``, whichever
comes first, then drains until nothing has arrived for ``DRAIN_QUIET_S``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.tenancy_oracle import NOTE_MARK, Conn, Oracle, SessionInfo, live_role
from loadtest.wire import WireClient
from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token

TOKEN_TTL_S = 4 * 3600
CALL_TIMEOUT_S = 30.0
DRAIN_QUIET_S = 3.0
MAX_DRAIN_S = 60.0
# Actors that mostly probe wait this long between events: the load is the lesson's.
PROBE_PAUSE_S = 0.05
ELEMENT_IDS = 40
ANNOTATION_IDS = 20
TIMER_S = 2
LAYOUT = {
    "S0": ("ta", ("st01", "st02", "st03")),
    "S1": ("ta", ("st03", "st04")),
    "S2": ("tb", ("st05", "st06", "st01")),
}
# (name, role, sessions joined, tabs)
PEOPLE: tuple[tuple[str, Role, tuple[str, ...], int], ...] = (
    ("ta", Role.TUTOR, ("S0", "S1"), 1),
    ("tb", Role.TUTOR, ("S2",), 1),
    ("tc", Role.TUTOR, (), 1),
    ("admin", Role.CENTER_ADMIN, ("S0", "S1", "S2"), 1),
    ("sup", Role.SUPERVISOR, ("S1",), 1),
    ("assessor", Role.ASSESSOR, (), 1),
    ("parent", Role.PARENT, (), 1),
    ("st01", Role.STUDENT, ("S0", "S2"), 2),
    ("st02", Role.STUDENT, ("S0",), 1),
    ("st03", Role.STUDENT, ("S0", "S1"), 1),
    ("st04", Role.STUDENT, ("S1",), 1),
    ("st05", Role.STUDENT, ("S2",), 1),
    ("st06", Role.STUDENT, ("S2",), 1),
    ("st07", Role.STUDENT, (), 1),
)
CHURNER = "st04"
REFRESH_EVERY = 50
NOTE_VISIBILITIES = ("PRIVATE", "STUDENT", "PARENT")


def add_patch(
    session_id: str, path: str, value: dict[str, Any], *, student_id: str | None = None
) -> dict[str, Any]:
    """A ``canvas:patch`` payload of one ``add`` (a tutor's names the student)."""
    payload: dict[str, Any] = {
        "session_id": session_id,
        "ops": [{"op": "add", "path": path, "value": value}],
    }
    if student_id is not None:
        payload["student_id"] = student_id
    return payload


@dataclass(frozen=True)
class TenancyConfig:
    urls: tuple[str, ...]
    secret: str
    centers: int = 3
    events: int = 100_000
    seconds: float = 600.0
    seed: int = 0


@dataclass(eq=False)
class Actor:
    conn: Conn
    token: str
    plan: tuple[str, ...]  # session ids it joins
    client: WireClient
    joined: set[str] = field(default_factory=set)
    churner: bool = False
    n: int = 0


class Soak:
    def __init__(self, config: TenancyConfig) -> None:
        self.config = config
        self.settings = Settings(jwt_secret=config.secret)
        self.rng = random.Random(config.seed)
        self.sent: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.refusals_accepted: Counter[str] = Counter()
        self.lost_acks: Counter[str] = Counter()
        self.disconnected: set[str] = set()
        self.total_sent = 0
        self.stop = asyncio.Event()
        self.halfway = asyncio.Event()
        self.sessions: dict[str, SessionInfo] = {}
        self.by_center: dict[str, list[str]] = {}  # center -> [S0, S1, S2 ids]
        self.actors: list[Actor] = []
        # session -> help id -> (student, status)
        self.help: dict[str, dict[str, tuple[str, str]]] = {}
        self.timers: dict[str, list[str]] = {}
        self.oracle: Oracle | None = None
        self.last_receive = time.monotonic()

    def token(self, user: str, role: Role, center: str) -> str:
        return mint_token(
            self.settings,
            sub=user,
            role=role,
            center=center,
            name=f"name {user}",
            ttl_s=TOKEN_TTL_S,
        )

    # Setting up.

    async def seed(self, http: aiohttp.ClientSession) -> None:
        url = self.config.urls[0]
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)

        async def post(path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{url}/api/v1{path}", json=body, headers=headers) as resp:
                if resp.status != 201:
                    raise RuntimeError(
                        f"POST {path}: expected 201, got {resp.status}: {await resp.text()}"
                    )
                data: dict[str, Any] = (await resp.json())["data"]
                return data

        for c in range(self.config.centers):
            center = f"ctr{c}"
            ids = []
            for label, (tutor, students) in LAYOUT.items():
                tutor_id = f"{center}-{tutor}"
                token = self.token(tutor_id, Role.TUTOR, center)
                body = {
                    "title": f"tenancy {center} {label}",
                    "tutor_id": tutor_id,
                    "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
                    "ends_at": (now + dt.timedelta(hours=3)).isoformat(),
                    "max_students": 10,
                }
                session = await post("/sessions", body, token)
                student_ids = [f"{center}-{s}" for s in students]
                for student in student_ids:
                    await post(
                        f"/sessions/{session['id']}/enrollments",
                        {"student_id": student, "student_name": f"name {student}"},
                        token,
                    )
                info = SessionInfo(session["id"], center, tutor_id, frozenset(student_ids))
                self.sessions[info.session_id] = info
                ids.append(info.session_id)
            self.by_center[center] = ids

    def build(self, http: aiohttp.ClientSession) -> None:
        index = itertools.count()
        labels = list(LAYOUT)
        for center, ids in self.by_center.items():
            for name, role, joins, tabs in PEOPLE:
                user = f"{center}-{name}"
                for tab in range(tabs):
                    self._actor(
                        http,
                        next(index),
                        user,
                        role,
                        center,
                        tab,
                        tuple(ids[labels.index(j)] for j in joins),
                    )
        root_joins = tuple(ids[0] for ids in self.by_center.values())
        self._actor(http, next(index), "ctr0-root", Role.SUPER_ADMIN, "ctr0", 0, root_joins)
        self.oracle = Oracle(list(self.sessions.values()), [a.conn for a in self.actors])

    def _actor(
        self,
        http: aiohttp.ClientSession,
        index: int,
        user: str,
        role: Role,
        center: str,
        tab: int,
        plan: tuple[str, ...],
    ) -> None:
        urls = self.config.urls
        conn = Conn(index, user, role.value, center, f"{user}#{tab}")
        client = WireClient(http, urls[index % len(urls)])
        actor = Actor(
            conn, self.token(user, role, center), plan, client, churner=user.endswith("-" + CHURNER)
        )
        client.on_any = lambda event, payload: self._receive(actor, event, payload)
        self.actors.append(actor)

    def _receive(self, actor: Actor, event: str, payload: Any) -> None:
        self.last_receive = time.monotonic()
        assert self.oracle is not None
        self.oracle.receive(actor.conn, event, payload)

    # Sending.

    async def call(
        self, actor: Actor, event: str, data: dict[str, Any], *, refused: bool = False
    ) -> dict[str, Any] | None:
        """Send and wait for the ack; None unless it was ``ok``. ``refused``: the
        protocol says no, and an ``ok`` counts in ``refusals_accepted``."""
        self.sent[event] += 1
        self.total_sent += 1
        if self.total_sent >= self.config.events // 2:
            self.halfway.set()
        if self.total_sent >= self.config.events:
            self.stop.set()
        if not actor.client.connected:
            # A hub died or dropped the socket: the run is over, and says so.
            self.disconnected.add(actor.conn.tag)
            self.stop.set()
            return None
        try:
            ack = await actor.client.call(event, data, timeout_s=CALL_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            self.lost_acks[event] += 1
            return None
        ok = isinstance(ack, dict) and ack.get("ok") is True
        error = (ack.get("error") or {}) if isinstance(ack, dict) else {}
        code = "ok" if ok else str(error.get("code", "?"))
        self.acks[f"{event} {code}"] += 1
        if refused and ok:
            self.refusals_accepted[event] += 1
        return ack if ok else None

    async def join(self, actor: Actor, session_id: str) -> bool:
        assert self.oracle is not None
        expected = self.oracle.may_join(actor.conn, session_id)
        self.oracle.joining(actor.conn, session_id)
        ack = await self.call(
            actor, "session:join", {"session_id": session_id}, refused=expected is None
        )
        if ack is not None:
            self.oracle.ack(actor.conn, session_id, ack)
            actor.joined.add(session_id)
        elif session_id not in actor.joined:
            self.oracle.left(actor.conn, session_id)
        return ack is not None

    async def leave(self, actor: Actor, session_id: str) -> None:
        assert self.oracle is not None
        actor.joined.discard(session_id)
        await self.call(actor, "session:leave", {"session_id": session_id})
        self.oracle.left(actor.conn, session_id)

    def stable(
        self, session_id: str, *, staff: bool = True, students: tuple[str, ...] = ()
    ) -> list[int]:
        """Connections joined to the session for good: its staff, and the named students."""
        out = []
        for actor in self.actors:
            if session_id not in actor.joined or actor.churner:
                continue
            role = actor.conn.member.get(session_id)
            if (staff and role in ("TUTOR", "OBSERVER")) or (
                role == "STUDENT" and actor.conn.user in students
            ):
                out.append(actor.conn.index)
        return out

    # The actors.

    async def run_actor(self, actor: Actor) -> None:
        role = actor.conn.role
        step = {"TUTOR": self.tutor_step, "STUDENT": self.student_step}.get(
            role, self.observer_step
        )
        while not self.stop.is_set():
            actor.n += 1
            live = self.live_plan(actor)
            if actor.n % REFRESH_EVERY == 0:
                await self.refresh(actor)
            elif not live:
                await self.probe_step(actor)
            else:
                await step(actor)
            if not live or role not in ("TUTOR", "STUDENT"):
                await asyncio.sleep(PROBE_PAUSE_S)

    def live_plan(self, actor: Actor) -> list[str]:
        """Its sessions it may still join (not ended, its enrollment not removed)."""
        assert self.oracle is not None
        return [s for s in actor.plan if self.oracle.may_join(actor.conn, s) is not None]

    async def refresh(self, actor: Actor) -> None:
        """``auth:refresh``: with a fresh token of its own, or (every other time)
        another user's of its center, which must be refused."""
        conn = actor.conn
        if actor.n % (2 * REFRESH_EVERY):
            token = self.token(conn.user, Role(conn.role), conn.center)
            await self.call(actor, "auth:refresh", {"token": token})
        else:
            name = "st03" if conn.user.endswith("-st02") else "st02"
            other = self.token(f"{conn.center}-{name}", Role.STUDENT, conn.center)
            await self.call(actor, "auth:refresh", {"token": other}, refused=True)

    def _other_sessions(self, actor: Actor, *, same_center: bool) -> list[str]:
        """Sessions it may never join (ended and left ones aside)."""
        return [
            s
            for s, info in self.sessions.items()
            if (info.center == actor.conn.center) == same_center
            and live_role(actor.conn, info) is None
        ]

    async def probe_step(self, actor: Actor) -> None:
        """A role with no live session tries to join one, or to sync a canvas."""
        # Also its own sessions once ended or its enrollment removed.
        gone = [s for s in actor.plan if s not in self.live_plan(actor)]
        candidates = (
            self._other_sessions(actor, same_center=True)
            + self._other_sessions(actor, same_center=False)
            + gone
        )
        session_id = self.rng.choice(candidates)
        info = self.sessions[session_id]
        if self.rng.random() < 0.6:
            await self.join(actor, session_id)
        else:
            student = sorted(info.students)[0]
            await self.call(
                actor,
                "canvas:sync",
                {"session_id": session_id, "student_id": student, "since": 0},
                refused=True,
            )

    async def observer_step(self, actor: Actor) -> None:
        session_id = self.rng.choice(self.live_plan(actor))
        info = self.sessions[session_id]
        student = self.rng.choice(sorted(info.students))
        r = self.rng.random()
        if r < 0.6:
            await self.call(
                actor, "canvas:sync", {"session_id": session_id, "student_id": student, "since": 0}
            )
        elif r < 0.75:
            await self.call(
                actor,
                "canvas:patch",
                add_patch(
                    session_id,
                    f"/annotations/x-{student}",
                    {"type": "rect", "m": f"{actor.conn.tag}:{actor.n}"},
                    student_id=student,
                ),
                refused=True,
            )
        elif r < 0.85:
            await self.call(
                actor,
                "announcement:send",
                {"session_id": session_id, "text": f"ob-{actor.n}"},
                refused=True,
            )
        else:
            others = self._other_sessions(actor, same_center=False)
            if others:
                await self.join(actor, self.rng.choice(others))
            else:
                await self.call(
                    actor,
                    "mode:set",
                    {"session_id": session_id, "student_id": student, "mode": "TEACH"},
                    refused=True,
                )

    async def tutor_step(self, actor: Actor) -> None:
        session_id = self.rng.choice(self.live_plan(actor))
        info = self.sessions[session_id]
        student = self.rng.choice(sorted(info.students))
        tag, n = actor.conn.tag, actor.n
        assert self.oracle is not None
        r = self.rng.random()
        if r < 0.35:
            marker = f"{tag}:{n}"
            ack = await self.call(
                actor,
                "canvas:patch",
                add_patch(
                    session_id,
                    f"/annotations/a-{student}-{n % ANNOTATION_IDS}",
                    {"type": "rect", "x": n % 100, "y": 1, "w": 5, "h": 5, "m": marker},
                    student_id=student,
                ),
            )
            if ack is not None:
                self.oracle.expect(
                    session_id,
                    "canvas:patches",
                    marker,
                    self.stable(session_id, students=(student,)),
                )
        elif r < 0.42:
            mode = self.rng.choice(("TEACH", "OBSERVE"))
            await self.call(
                actor, "mode:set", {"session_id": session_id, "student_id": student, "mode": mode}
            )
        elif r < 0.49:
            exercise = f"ex-{tag}-{n}"
            ack = await self.call(
                actor,
                "exercise:assign",
                {
                    "session_id": session_id,
                    "student_id": student,
                    "exercise": {"id": exercise, "title": f"exercise {n}"},
                },
            )
            if ack is not None:
                self.oracle.expect(
                    session_id,
                    "exercise:assigned",
                    exercise,
                    self.stable(session_id, students=(student,)),
                )
        elif r < 0.56:
            visibility = NOTE_VISIBILITIES[n % 3]
            body: dict[str, Any] = {
                "session_id": session_id,
                "visibility": visibility,
                "text": f"{NOTE_MARK}{visibility}-{tag}-{n}",
            }
            if visibility != "PRIVATE" or n % 2:
                body["student_id"] = student
            await self.call(actor, "note:add", body)
        elif r < 0.66:
            open_help = [
                (h, s, st)
                for h, (s, st) in self.help.get(session_id, {}).items()
                if st in ("OPEN", "IN_PROGRESS")
            ]
            if not open_help:
                await self.call(
                    actor,
                    "canvas:sync",
                    {"session_id": session_id, "student_id": student, "since": 0},
                )
                return
            help_id, owner, status = self.rng.choice(open_help)
            new = "IN_PROGRESS" if status == "OPEN" else "RESOLVED"
            ack = await self.call(
                actor,
                "help:update",
                {"session_id": session_id, "help_id": help_id, "status": new, "response": "ok"},
            )
            if ack is not None:
                self.help[session_id][help_id] = (owner, new)
                self.oracle.expect(
                    session_id,
                    "help:updated",
                    f"{help_id}:{new}",
                    self.stable(session_id, students=(owner,)),
                )
        elif r < 0.73:
            named = n % 2 == 0
            body = {
                "session_id": session_id,
                "label": f"tm-{n}",
                "duration_s": TIMER_S,
                "warn_before_s": 1,
            }
            if named:
                body["student_id"] = student
            ack = await self.call(actor, "timer:start", body)
            if ack is not None:
                timer_id = ack["timer"]["id"]
                self.timers.setdefault(session_id, []).append(timer_id)
                students = (student,) if named else tuple(info.students)
                self.oracle.expect(
                    session_id,
                    "timer:started",
                    timer_id,
                    self.stable(session_id, students=students),
                )
        elif r < 0.77:
            running = self.timers.get(session_id) or []
            if not running:
                # A tutor has no presence to ping.
                await self.call(
                    actor,
                    "presence:ping",
                    {"session_id": session_id, "state": "active"},
                    refused=True,
                )
                return
            timer_id = running.pop(self.rng.randrange(len(running)))
            await self.call(actor, "timer:cancel", {"session_id": session_id, "timer_id": timer_id})
        elif r < 0.87:
            text = f"an-{tag}-{n}"
            body = {"session_id": session_id, "text": text}
            named = n % 2 == 0
            if named:
                body["student_id"] = student
            ack = await self.call(actor, "announcement:send", body)
            if ack is not None:
                students = (student,) if named else tuple(info.students)
                self.oracle.expect(
                    session_id, "announcement", text, self.stable(session_id, students=students)
                )
        elif r < 0.93:
            await self.call(
                actor, "canvas:sync", {"session_id": session_id, "student_id": student, "since": 0}
            )
        elif r < 0.96:
            await self.join(actor, session_id)
        else:
            # Another tutor's session, or another center's: never granted.
            others = self._other_sessions(actor, same_center=n % 2 == 0)
            await self.join(actor, self.rng.choice(others))

    async def student_step(self, actor: Actor) -> None:
        assert self.oracle is not None
        if actor.churner and actor.n % 10 == 0:
            session_id = actor.plan[0]
            if session_id in actor.joined:
                await self.leave(actor, session_id)
            else:
                await self.join(actor, session_id)
            return
        live = self.live_plan(actor)
        joined = sorted(actor.joined.intersection(live)) or live
        session_id = self.rng.choice(joined)
        info = self.sessions[session_id]
        user, tag, n = actor.conn.user, actor.conn.tag, actor.n
        others = sorted(info.students - {user})
        r = self.rng.random()
        if r < 0.55:
            marker = f"{tag}:{n}"
            ack = await self.call(
                actor,
                "canvas:patch",
                add_patch(
                    session_id,
                    f"/elements/e-{user}-{n % ELEMENT_IDS}",
                    {"type": "stroke", "points": [[n % 50, 1], [2, 3]], "m": marker},
                ),
            )
            if ack is not None and not actor.churner:
                expected = self.stable(session_id, students=(user,))
                self.oracle.expect(
                    session_id,
                    "canvas:patches",
                    marker,
                    [i for i in expected if i != actor.conn.index],
                )
        elif r < 0.65:
            state = "idle" if n % 2 else "active"
            await self.call(actor, "presence:ping", {"session_id": session_id, "state": state})
        elif r < 0.73:
            exercise, pct = f"px-{tag}-{n}", n % 101
            ack = await self.call(
                actor,
                "exercise:progress",
                {"session_id": session_id, "exercise_id": exercise, "progress_pct": pct},
            )
            if ack is not None and not actor.churner:
                self.oracle.expect(
                    session_id, "progress:update", f"{exercise}:{pct}", self.stable(session_id)
                )
        elif r < 0.79:
            ack = await self.call(
                actor,
                "help:request",
                {"session_id": session_id, "message": f"help {n}", "exercise_id": f"hx-{tag}-{n}"},
            )
            if ack is not None:
                help_id = ack["help_request"]["id"]
                self.oracle.help_request(help_id, session_id, user)
                self.help.setdefault(session_id, {})[help_id] = (user, "OPEN")
                if not actor.churner:
                    self.oracle.expect(
                        session_id,
                        "help:updated",
                        f"{help_id}:OPEN",
                        self.stable(session_id, students=(user,)),
                    )
        elif r < 0.83:
            mine = [
                h
                for h, (s, st) in self.help.get(session_id, {}).items()
                if s == user and st in ("OPEN", "IN_PROGRESS")
            ]
            if mine:
                help_id = self.rng.choice(mine)
                ack = await self.call(
                    actor,
                    "help:update",
                    {"session_id": session_id, "help_id": help_id, "status": "CANCELLED"},
                )
                if ack is not None:
                    self.help[session_id][help_id] = (user, "CANCELLED")
                    if not actor.churner:
                        self.oracle.expect(
                            session_id,
                            "help:updated",
                            f"{help_id}:CANCELLED",
                            self.stable(session_id, students=(user,)),
                        )
        elif r < 0.88:
            await self.call(
                actor, "canvas:sync", {"session_id": session_id, "student_id": user, "since": 0}
            )
        elif r < 0.90:
            await self.join(actor, session_id)
        else:
            await self.student_probe(actor, session_id, others)

    async def student_probe(self, actor: Actor, session_id: str, others: list[str]) -> None:
        """What a student may not do: each must be refused."""
        pick = actor.n % 5
        if pick == 0 and others:
            other = self.rng.choice(others)
            await self.call(
                actor,
                "canvas:patch",
                add_patch(
                    session_id,
                    f"/elements/p-{actor.conn.user}",
                    {"type": "rect", "m": f"{actor.conn.tag}:p{actor.n}"},
                    student_id=other,
                ),
                refused=True,
            )
        elif pick == 1 and others:
            await self.call(
                actor,
                "canvas:sync",
                {"session_id": session_id, "student_id": self.rng.choice(others), "since": 0},
                refused=True,
            )
        elif pick == 2:
            theirs = [
                h
                for h, (s, st) in self.help.get(session_id, {}).items()
                if s != actor.conn.user and st == "OPEN"
            ]
            if theirs:
                await self.call(
                    actor,
                    "help:update",
                    {
                        "session_id": session_id,
                        "help_id": self.rng.choice(theirs),
                        "status": "CANCELLED",
                    },
                    refused=True,
                )
            else:
                await self.call(
                    actor,
                    "mode:set",
                    {"session_id": session_id, "student_id": actor.conn.user, "mode": "TEACH"},
                    refused=True,
                )
        else:
            sessions = self._other_sessions(actor, same_center=pick == 3)
            await self.join(actor, self.rng.choice(sessions))

    async def midway(self, http: aiohttp.ClientSession) -> None:
        """Halfway: in each center ta ends S1 (``session:end``) and tb removes st06 from
        S2 over REST; from then on neither may see anything more of those sessions."""
        assert self.oracle is not None
        await self.halfway.wait()
        if self.stop.is_set():
            return
        for center, (_, s1, s2) in self.by_center.items():
            tutor = next(a for a in self.actors if a.conn.user == f"{center}-ta")
            members = self.stable(s1, students=tuple(self.sessions[s1].students))
            # Nothing of S1 is promised to anyone from the moment the end is sent: an
            # event acked meanwhile may be handled after the end took everyone out.
            self.forget(s1)
            if await self.call(tutor, "session:end", {"session_id": s1}) is not None:
                self.oracle.session_ended(s1)
                self.oracle.expect(s1, "session:ended", s1, members)
                self.forget(s1)  # joins granted while the end was on its way
            student = f"{center}-st06"
            removed = self.stable(s2, staff=False, students=(student,))
            # Likewise nothing of S2 is promised to st06 once the removal is sent.
            self.forget(s2, student)
            token = self.token(f"{center}-tb", Role.TUTOR, center)
            path = f"{self.config.urls[-1]}/api/v1/sessions/{s2}/enrollments/{student}"
            self.sent["DELETE enrollment"] += 1
            async with http.delete(path, headers={"Authorization": f"Bearer {token}"}) as resp:
                self.acks[f"DELETE enrollment {resp.status}"] += 1
                if resp.status in (200, 204):
                    self.oracle.student_removed(s2, student)
                    self.oracle.expect(s2, "session:removed", s2, removed)
                    self.forget(s2, student)

    def forget(self, session_id: str, user: str | None = None) -> None:
        """Promise nothing more of the session to anyone (or to ``user``): see ``stable``."""
        for actor in self.actors:
            if user is None or actor.conn.user == user:
                actor.joined.discard(session_id)

    # The run.

    async def quiet(self, since: float) -> None:
        """Until nothing has arrived for ``DRAIN_QUIET_S`` (at most ``MAX_DRAIN_S``)."""
        while True:
            now = time.monotonic()
            wait = self.last_receive + DRAIN_QUIET_S - now
            if wait <= 0 or now - since >= MAX_DRAIN_S:
                return
            await asyncio.sleep(min(wait, since + MAX_DRAIN_S - now))

    async def run(self) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await self.seed(http)
            self.build(http)
            await asyncio.gather(*(a.client.connect(a.token) for a in self.actors))
            for actor in self.actors:
                for session_id in actor.plan:
                    if not await self.join(actor, session_id):
                        raise RuntimeError(f"{actor.conn.tag} could not join {session_id}")
            setup_sent = self.total_sent
            start = time.monotonic()
            tasks = [asyncio.create_task(self.run_actor(a)) for a in self.actors]
            tasks.append(asyncio.create_task(self.midway(http)))
            try:
                await asyncio.wait_for(self.stop.wait(), self.config.seconds)
            except TimeoutError:
                self.stop.set()
            self.halfway.set()
            load_s = time.monotonic() - start
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failures = [repr(r) for r in results if isinstance(r, BaseException)]
            drain_start = time.monotonic()
            # Timers started last fire within TIMER_S; then nothing more is due.
            await asyncio.sleep(TIMER_S + 1)
            await self.quiet(drain_start)
            drain_s = time.monotonic() - drain_start
            disconnected = sum(1 for a in self.actors if not a.client.connected)
            assert self.oracle is not None
            self.oracle.check_queues()
            await asyncio.gather(*(a.client.close() for a in self.actors))
        assert self.oracle is not None
        received = sum(self.oracle.received.values())
        return {
            "hubs": len(self.config.urls),
            "centers": self.config.centers,
            "sessions": len(self.sessions),
            "connections": len(self.actors),
            "roles": dict(Counter(a.conn.role for a in self.actors)),
            "events_sent": self.total_sent,
            "events_sent_setup": setup_sent,
            "events_received": received,
            "load_s": round(load_s, 1),
            "drain_s": round(drain_s, 1),
            "sent_per_s": round((self.total_sent - setup_sent) / load_s, 1) if load_s else None,
            **self.oracle.summary(),
            "refusals_accepted": sum(self.refusals_accepted.values()),
            "refusals_accepted_by_event": dict(self.refusals_accepted),
            "lost_acks": dict(self.lost_acks),
            "sent_by_event": dict(sorted(self.sent.items())),
            "acks": dict(sorted(self.acks.items())),
            "actor_failures": failures[:5],
            "disconnected_at_end": disconnected,
            "disconnected_while_sending": sorted(self.disconnected),
        }


async def run_tenancy(config: TenancyConfig) -> dict[str, Any]:
    return await Soak(config).run()
