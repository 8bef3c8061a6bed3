"""The relay mix, one worker's share of sessions: students drawing, tutors annotating.

Each student sends a 20-point stroke ``canvas:patch`` at ``rate`` per second
(open loop, at most ``MAX_IN_FLIGHT`` unacked; beyond that a tick is counted
as ``skipped``), a ``presence:ping`` every ~5 s, an ``exercise:progress``
every ~10 s, and now and then a ``help:request`` that it cancels a second
later (one open request at a time, as the hub allows). Each tutor annotates
one of its students' canvases every ~2 s. Those intervals are a busy class's;
``EventMix`` sets others.

Measured here, for the patches: sent, acked, skipped, delivered to the tutor,
lost (acked but never delivered by the end of the drain, which lasts until
nothing new arrives for ``drain_s``), duplicated (one
``(student_id, seq)`` twice at the tutor), out of order (a seq below one
already seen on that canvas); student-to-tutor latency (``value.t``, the
sender's ``time.perf_counter()``, against the tutor's clock in the same
process) and ack latency; deliveries per second since the start. The same
counts for the tutors' annotations as their students receive them.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.members import Tally, connect_joined
from loadtest.sessions import SessionPlan, Tokens
from loadtest.wire import WireClient
from realtime.base.identity import Role

MAX_IN_FLIGHT = 100
PING_EVERY_S = 5.0
PROGRESS_EVERY_S = 10.0
HELP_EVERY_S = 15.0
HELP_CANCEL_AFTER_S = 1.0
ANNOTATE_EVERY_S = 2.0
# Element ids are reused (an add of an existing id replaces it): canvases stay small.
ELEMENT_IDS = 100
ANNOTATION_IDS = 20
STROKE = [[10 + 3 * i, 20 + 2 * i] for i in range(20)]
SETTLE_POLL_S = 0.05
# The drain's bound: a saturated hub may take this long to work through its queues.
MAX_DRAIN_S = 60.0
JOIN_CONCURRENCY = 50


@dataclass(frozen=True)
class EventMix:
    """Seconds between a student's events besides drawing, and between a tutor's
    annotations (``--ping-every`` and the like; the defaults are a busy class's)."""

    ping_every_s: float = PING_EVERY_S
    progress_every_s: float = PROGRESS_EVERY_S
    help_every_s: float = HELP_EVERY_S
    annotate_every_s: float = ANNOTATE_EVERY_S


def mix_of(args: Any) -> EventMix:
    """The intervals ``--ping-every`` and the like give (the defaults where a mode has
    none of them)."""
    defaults = EventMix()
    return EventMix(
        *(
            getattr(args, f"{name}_every", getattr(defaults, f"{name}_every_s"))
            for name in ("ping", "progress", "help", "annotate")
        )
    )


@dataclass(frozen=True)
class RelayConfig:
    url: str
    secret: str
    sessions: tuple[SessionPlan, ...]
    rate: float
    seconds: float
    drain_s: float = 5.0
    seed: int = 0
    # Every stroke a new element (the canvas grows all lesson), not one of ELEMENT_IDS.
    growing: bool = False
    # Where the tutors connect ("": ``url``, with their students).
    tutor_url: str = ""
    mix: EventMix = EventMix()


@dataclass(eq=False)
class Student:
    user_id: str
    session_id: str
    client: WireClient
    sent: int = 0
    in_flight: int = 0
    skipped: int = 0
    acked: list[int] = field(default_factory=list)
    annotations: set[int] = field(default_factory=set)
    help_id: str | None = None
    cancel_at: float = math.inf
    progress: int = 0

    def on_patches(self, data: dict[str, Any]) -> None:
        for item in data["items"]:
            if item["author"] == "tutor":
                self.annotations.add(item["seq"])


@dataclass(eq=False)
class Tutor:
    """The tutor's view of its students' canvases: what arrived, in what order, how late."""

    user_id: str
    plan: SessionPlan
    client: WireClient
    start_at: float = 0.0
    bins: list[int] = field(default_factory=list)
    seen: dict[str, set[int]] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    events: int = 0
    latency_ms: list[float] = field(default_factory=list)
    # The second of the run each of ``latency_ms``'s patches was sent in.
    sent_s: list[int] = field(default_factory=list)
    annotated: dict[str, list[int]] = field(default_factory=dict)
    annotations_sent: int = 0
    annotations_in_flight: int = 0

    def on_patches(self, data: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.events += 1
        second = min(max(0, int(now - self.start_at)), len(self.bins) - 1)
        for item in data["items"]:
            student, seq = item["student_id"], item["seq"]
            seen = self.seen.setdefault(student, set())
            if seq in seen:
                self.duplicated += 1
                continue
            seen.add(seq)
            if seq < self.last.get(student, 0):
                self.out_of_order += 1
            self.last[student] = max(seq, self.last.get(student, 0))
            if item["author"] == "student":
                self.delivered += 1
                self.bins[second] += 1
                sent_at = item["ops"][0]["value"]["t"]
                self.latency_ms.append((now - sent_at) * 1000)
                self.sent_s.append(max(0, int(sent_at - self.start_at)))


class RelayWorker:
    """One worker's sessions under the relay mix (see the module docstring)."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.tokens = Tokens(config.secret)
        self.tally = Tally()
        self.students: list[Student] = []
        self.tutors: list[Tutor] = []
        self.ack_ms: list[float] = []

    async def prepare(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        gate = asyncio.Semaphore(JOIN_CONCURRENCY)

        async def join(user_id: str, role: Role, session_id: str) -> WireClient:
            url = self.config.url
            if role is Role.TUTOR and self.config.tutor_url:
                url = self.config.tutor_url
            async with gate:
                token = self.tokens(user_id, role)
                client, _ = await connect_joined(http, url, token, session_id)
                return client

        plans = self.config.sessions
        tutors = await asyncio.gather(*(join(p.tutor_id, Role.TUTOR, p.session_id) for p in plans))
        for plan, client in zip(plans, tutors, strict=True):
            tutor = Tutor(plan.tutor_id, plan, client)
            client.on("canvas:patches", tutor.on_patches)
            self.tutors.append(tutor)
        pairs = [(p.session_id, s) for p in plans for s in p.student_ids]
        clients = await asyncio.gather(*(join(s, Role.STUDENT, sid) for sid, s in pairs))
        for (session_id, user_id), client in zip(pairs, clients, strict=True):
            student = Student(user_id, session_id, client)
            client.on("canvas:patches", student.on_patches)
            self.students.append(student)
        return {"tutors": len(self.tutors), "students": len(self.students)}

    async def run(self, start_at: float) -> dict[str, Any]:
        end_at = start_at + self.config.seconds
        for tutor in self.tutors:
            tutor.start_at = start_at
            tutor.bins = [0] * (math.ceil(self.config.seconds + MAX_DRAIN_S) + 1)
        await asyncio.gather(
            *(self._student(s, start_at, end_at) for s in self.students),
            *(self._tutor(t, start_at, end_at) for t in self.tutors),
        )
        await self._drain()
        return self._result()

    async def _drain(self) -> None:
        """Wait until everything acked is delivered; give up after ``drain_s`` without
        a new ack or delivery (a saturated hub is still working through its queues:
        what it delivers late is late, not lost), and after ``MAX_DRAIN_S`` in all."""
        began = time.perf_counter()
        quiet_since, progress = began, self._counts()
        while not self._settled():
            now = time.perf_counter()
            if now - quiet_since >= self.config.drain_s or now - began >= MAX_DRAIN_S:
                return
            await asyncio.sleep(SETTLE_POLL_S)
            counts = self._counts()
            if counts != progress:
                quiet_since, progress = time.perf_counter(), counts

    def _counts(self) -> tuple[int, int, int]:
        return (
            sum(len(s.acked) for s in self.students),
            sum(t.delivered for t in self.tutors),
            sum(len(s.annotations) for s in self.students),
        )

    async def close(self) -> None:
        clients = [t.client for t in self.tutors] + [s.client for s in self.students]
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def _student(self, st: Student, start_at: float, end_at: float) -> None:
        rng = random.Random(f"{self.config.seed}-{st.user_id}")
        period, mix = 1.0 / self.config.rate, self.config.mix
        next_patch = start_at + rng.random() * period
        next_ping = start_at + rng.random() * mix.ping_every_s
        next_progress = start_at + rng.random() * mix.progress_every_s
        next_help = start_at + rng.uniform(0.2, 1.0) * mix.help_every_s
        while (at := min(next_patch, next_ping, next_progress, next_help, st.cancel_at)) < end_at:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            if at == st.cancel_at:
                await self._cancel_help(st)
            elif at == next_patch:
                await self._patch(st)
                next_patch += period
            elif at == next_ping:
                await self._send(
                    st.client, "presence:ping", {"session_id": st.session_id, "state": "active"}
                )
                next_ping += mix.ping_every_s
            elif at == next_progress:
                await self._progress(st)
                next_progress += mix.progress_every_s
            else:
                await self._request_help(st)
                next_help += mix.help_every_s

    async def _patch(self, st: Student) -> None:
        if st.in_flight >= MAX_IN_FLIGHT:
            st.skipped += 1
            return
        n = st.sent
        st.sent += 1
        st.in_flight += 1
        sent_at = time.perf_counter()

        def acked(payload: Any) -> None:
            st.in_flight -= 1
            if self.tally.ack("canvas:patch", payload):
                st.acked.append(payload["seq"])
                self.ack_ms.append((time.perf_counter() - sent_at) * 1000)

        value = {"type": "stroke", "points": STROKE, "color": "#1f77b4", "width": 2, "t": sent_at}
        element = n if self.config.growing else n % ELEMENT_IDS
        op = {"op": "add", "path": f"/elements/e{element}", "value": value}
        payload = {"session_id": st.session_id, "ops": [op], "client_ref": n}
        await st.client.emit("canvas:patch", payload, acked)

    async def _progress(self, st: Student) -> None:
        st.progress = min(100, st.progress + 10)
        data = {"session_id": st.session_id, "exercise_id": "ex-1", "progress_pct": st.progress}
        await self._send(st.client, "exercise:progress", data)

    async def _request_help(self, st: Student) -> None:
        if st.help_id is not None:
            return

        def opened(payload: Any) -> None:
            if self.tally.ack("help:request", payload):
                st.help_id = payload["help_request"]["id"]
                st.cancel_at = time.perf_counter() + HELP_CANCEL_AFTER_S

        data = {"session_id": st.session_id, "message": "stuck on this one"}
        await st.client.emit("help:request", data, opened)

    async def _cancel_help(self, st: Student) -> None:
        data = {"session_id": st.session_id, "help_id": st.help_id, "status": "CANCELLED"}
        st.help_id, st.cancel_at = None, math.inf
        await self._send(st.client, "help:update", data)

    async def _send(self, client: WireClient, event: str, data: dict[str, Any]) -> None:
        await client.emit(event, data, lambda payload: self.tally.ack(event, payload))

    async def _tutor(self, tutor: Tutor, start_at: float, end_at: float) -> None:
        rng = random.Random(f"{self.config.seed}-{tutor.user_id}")
        every_s = self.config.mix.annotate_every_s
        next_at = start_at + rng.random() * every_s
        students = tutor.plan.student_ids
        while next_at < end_at:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await self._annotate(tutor, students[tutor.annotations_sent % len(students)])
            next_at += every_s

    async def _annotate(self, tutor: Tutor, student_id: str) -> None:
        n = tutor.annotations_sent
        tutor.annotations_sent += 1
        tutor.annotations_in_flight += 1

        def acked(payload: Any) -> None:
            tutor.annotations_in_flight -= 1
            if self.tally.ack("canvas:patch", payload):
                tutor.annotated.setdefault(student_id, []).append(payload["seq"])

        value = {"type": "text", "x": 5, "y": 5, "text": "check this", "t": time.perf_counter()}
        op = {"op": "add", "path": f"/annotations/a{n % ANNOTATION_IDS}", "value": value}
        payload = {"session_id": tutor.plan.session_id, "student_id": student_id, "ops": [op]}
        await tutor.client.emit("canvas:patch", payload, acked)

    def _settled(self) -> bool:
        if any(s.in_flight for s in self.students) or any(
            t.annotations_in_flight for t in self.tutors
        ):
            return False
        acked = sum(len(s.acked) for s in self.students)
        annotated = sum(len(v) for t in self.tutors for v in t.annotated.values())
        received = sum(len(s.annotations) for s in self.students)
        return sum(t.delivered for t in self.tutors) >= acked and received >= annotated

    def _result(self) -> dict[str, Any]:
        seen = {t.plan.session_id: t.seen for t in self.tutors}
        by_student = {(s.session_id, s.user_id): s for s in self.students}
        lost = sum(
            len(set(s.acked) - seen[s.session_id].get(s.user_id, set())) for s in self.students
        )
        annotations_lost = sum(
            len(set(seqs) - by_student[(t.plan.session_id, student)].annotations)
            for t in self.tutors
            for student, seqs in t.annotated.items()
        )
        bins = [sum(col) for col in zip(*(t.bins for t in self.tutors), strict=True)]
        return {
            "students": len(self.students),
            "tutors": len(self.tutors),
            "sent": sum(s.sent for s in self.students),
            "acked": sum(len(s.acked) for s in self.students),
            "skipped": sum(s.skipped for s in self.students),
            "delivered": sum(t.delivered for t in self.tutors),
            "lost": lost,
            "duplicated": sum(t.duplicated for t in self.tutors),
            "out_of_order": sum(t.out_of_order for t in self.tutors),
            "relay_events": sum(t.events for t in self.tutors),
            "annotations_sent": sum(t.annotations_sent for t in self.tutors),
            "annotations_acked": sum(len(v) for t in self.tutors for v in t.annotated.values()),
            "annotations_delivered": sum(len(s.annotations) for s in self.students),
            "annotations_lost": annotations_lost,
            "events_ok": dict(Counter(self.tally.ok)),
            "errors": self.tally.error_summary(),
            "latency_ms": [x for t in self.tutors for x in t.latency_ms],
            "latency_sent_s": [x for t in self.tutors for x in t.sent_s],
            "ack_ms": self.ack_ms,
            "delivered_per_s": bins,
        }
