"""A reconnect storm, one worker's share: everyone drops at once and comes back with ``since``.

Students draw at a low rate. At ``drop_after_s`` every dropped client's TCP
connection is cut without a close frame (students, tutors or all), and all of
them reconnect at once (at most ``concurrency`` connecting at a time per
worker) and re-join: a student with ``since = {itself: last acked seq}``, a
tutor with ``since`` = the highest seq it holds of each student.

Measured here: each client's time from the drop to its join ack, whether the
ack caught up with ``ops`` or sent the ``doc``, and whether anything was
missed. Each tutor keeps a replica per canvas (the seqs it saw relayed or in
catch-up ops; a ``doc`` covers everything up to its seq). At the end it asks
``canvas:sync`` for the final seq: the replica must hold 1..final with no
gap, and every patch a student saw acked must be in it.
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

from loadtest.members import JOIN_FAILURES, Tally, connect_joined
from loadtest.scenario import STROKE
from loadtest.sessions import SessionPlan, Tokens
from loadtest.wire import WireClient
from realtime.base.identity import Role

DROP_KINDS = ("all", "students", "tutors")
SETTLE_POLL_S = 0.05
# The hub relays a patch up to its flush interval (0.02 s by default) after the ack:
# wait this long after the last ack before reading what the tutors hold.
RELAY_SETTLE_S = 0.5


@dataclass(frozen=True)
class StormConfig:
    url: str
    secret: str
    sessions: tuple[SessionPlan, ...]
    rate: float = 0.2
    drop_after_s: float = 3.0
    after_s: float = 2.0
    drop: str = "all"
    concurrency: int = 500
    # The first joins are set-up, not measured: fewer at a time, so a slow machine
    # gets everyone in before the storm instead of failing the run.
    prepare_concurrency: int = 100
    recover_timeout_s: float = 60.0
    drain_s: float = 5.0
    seed: int = 0


@dataclass(eq=False)
class Member:
    """A tutor or student; ``held`` is what it holds of each canvas: the seqs it has seen."""

    user_id: str
    role: Role
    plan: SessionPlan
    client: WireClient
    held: dict[str, set[int]] = field(default_factory=dict)
    sent: int = 0
    in_flight: int = 0
    acked: list[int] = field(default_factory=list)

    def since(self) -> dict[str, int]:
        if self.role is Role.STUDENT:
            return {self.user_id: max(self.acked, default=0)}
        return {s: max(self.held.get(s, ()), default=0) for s in self.plan.student_ids}

    def on_patches(self, data: dict[str, Any]) -> None:
        for item in data["items"]:
            self.held.setdefault(item["student_id"], set()).add(item["seq"])

    def catch_up(self, canvases: dict[str, dict[str, Any]]) -> Counter[str]:
        """Take a join ack's canvases into the replica; how many answered ops, how many doc."""
        kinds: Counter[str] = Counter()
        for student, canvas in canvases.items():
            held = self.held.setdefault(student, set())
            if "ops" in canvas:
                held.update(entry["seq"] for entry in canvas["ops"])
                kinds["ops"] += 1
            else:
                held.update(range(1, canvas["seq"] + 1))
                kinds["doc"] += 1
        return kinds


class StormWorker:
    """Everyone joined and drawing; drop, reconnect, verify (see the module docstring)."""

    def __init__(self, config: StormConfig) -> None:
        if config.drop not in DROP_KINDS:
            raise ValueError(f"expected drop in {DROP_KINDS}, got {config.drop!r}")
        self.config = config
        self.tokens = Tokens(config.secret)
        self.tally = Tally()
        self.members: list[Member] = []
        self.recovery_s: list[float] = []
        self.answers: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._http: aiohttp.ClientSession | None = None

    async def prepare(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        self._http = http
        gate = asyncio.Semaphore(self.config.prepare_concurrency)
        for plan in self.config.sessions:
            for user_id, role in [(plan.tutor_id, Role.TUTOR)] + [
                (s, Role.STUDENT) for s in plan.student_ids
            ]:
                self.members.append(Member(user_id, role, plan, WireClient(http, self.config.url)))

        async def join(member: Member) -> None:
            async with gate:
                await self._join(member, client=member.client)

        await asyncio.gather(*(join(m) for m in self.members))
        return {"clients": len(self.members)}

    async def run(self, start_at: float) -> dict[str, Any]:
        drop_at = start_at + self.config.drop_after_s
        students = [m for m in self.members if m.role is Role.STUDENT]
        drawing = [asyncio.create_task(self._draw(m, start_at)) for m in students]
        try:
            await asyncio.sleep(max(0.0, drop_at - time.perf_counter()))
            dropped = self._drop()
            await self._recover(dropped, drop_at)
            await asyncio.sleep(self.config.after_s)
        finally:
            for task in drawing:
                task.cancel()
            await asyncio.gather(*drawing, return_exceptions=True)
        await self._drain(students)
        return {
            "clients": len(self.members),
            "dropped": dict(Counter(m.role.value for m in dropped)),
            **await self._verify(),
        }

    async def close(self) -> None:
        await asyncio.gather(*(m.client.close() for m in self.members), return_exceptions=True)

    async def _join(
        self, member: Member, since: dict[str, int] | None = None, client: WireClient | None = None
    ) -> dict[str, Any]:
        """Join on ``client`` (first join) or a new connection (a re-join after the drop)."""
        assert self._http is not None
        token = self.tokens(member.user_id, member.role)
        client, ack = await connect_joined(
            self._http, self.config.url, token, member.plan.session_id, since, client,
            handlers={"canvas:patches": member.on_patches},
        )  # fmt: skip
        member.client = client
        return ack

    def _drop(self) -> list[Member]:
        drop = self.config.drop
        dropped = [
            m
            for m in self.members
            if drop == "all" or (drop == "students") == (m.role is Role.STUDENT)
        ]
        for member in dropped:
            member.client.abort()
            member.in_flight = 0  # their acks are gone with the connection
        return dropped

    async def _recover(self, dropped: list[Member], drop_at: float) -> None:
        gate = asyncio.Semaphore(self.config.concurrency)

        async def rejoin(member: Member) -> None:
            async with gate:
                try:
                    ack = await self._join(member, member.since())
                except JOIN_FAILURES as exc:
                    self.failed[type(exc).__name__] += 1
                    return
            self.recovery_s.append(time.perf_counter() - drop_at)
            self.answers.update(member.catch_up(ack.get("canvases", {})))

        async with asyncio.timeout(self.config.recover_timeout_s):
            await asyncio.gather(*(rejoin(m) for m in dropped))

    async def _draw(self, member: Member, start_at: float) -> None:
        rng = random.Random(f"{self.config.seed}-{member.user_id}")
        period = 1.0 / self.config.rate
        next_at = start_at + rng.random() * period
        limit = start_at + self.config.drop_after_s + self.config.recover_timeout_s
        while next_at < limit + self.config.after_s:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += period
            if member.client.connected:
                await self._patch(member)

    async def _patch(self, member: Member) -> None:
        n = member.sent
        member.sent += 1
        member.in_flight += 1
        client = member.client

        def acked(payload: Any) -> None:
            if client is member.client:
                member.in_flight -= 1
            if self.tally.ack("canvas:patch", payload):
                member.acked.append(payload["seq"])

        value = {"type": "stroke", "points": STROKE, "t": time.perf_counter()}
        op = {"op": "add", "path": f"/elements/e{n % 100}", "value": value}
        await client.emit(
            "canvas:patch", {"session_id": member.plan.session_id, "ops": [op]}, acked
        )

    async def _drain(self, students: list[Member]) -> None:
        for _ in range(math.ceil(self.config.drain_s / SETTLE_POLL_S)):
            if not any(m.in_flight for m in students):
                break
            await asyncio.sleep(SETTLE_POLL_S)
        await asyncio.sleep(RELAY_SETTLE_S)

    async def _verify(self) -> dict[str, Any]:
        acked = {(m.plan.session_id, m.user_id): m.acked for m in self.members if m.acked}
        missed = acked_missing = tail = final_total = unverified = 0
        for tutor in (m for m in self.members if m.role is Role.TUTOR):
            if not tutor.client.connected:  # its re-join failed (counted in "failed")
                unverified += len(tutor.plan.student_ids)
                continue
            for student in tutor.plan.student_ids:
                held = tutor.held.setdefault(student, set())
                final, late = await self._final_seq(tutor, student, max(held, default=0))
                tail += late
                final_total += final
                missed += len(set(range(1, final + 1)) - held)
                acked_missing += len(set(acked.get((tutor.plan.session_id, student), ())) - held)
        return {
            "recovered": len(self.recovery_s),
            "failed": dict(self.failed),
            "recovery_s": self.recovery_s,
            "join_answers": dict(self.answers),
            "sent": sum(m.sent for m in self.members),
            "acked": sum(len(m.acked) for m in self.members),
            "final_seqs": final_total,
            "missed": missed,
            "acked_missing": acked_missing,
            "tail_missing": tail,
            "unverified_canvases": unverified,
            "errors": self.tally.error_summary(),
        }

    async def _final_seq(self, tutor: Member, student: str, since: int) -> tuple[int, int]:
        """The canvas's seq now, and how many patches after ``since`` the relay never brought."""
        data = {"session_id": tutor.plan.session_id, "student_id": student, "since": since}
        ack = await tutor.client.call("canvas:sync", data)
        if not isinstance(ack, dict) or ack.get("ok") is not True:
            raise RuntimeError(f"canvas:sync {data}: expected ok, got {ack!r}")
        seq: int = ack["seq"]
        return seq, len(ack.get("ops", ())) if "ops" in ack else seq - since
