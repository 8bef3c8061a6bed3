"""The rolling-restart drill's clients: stock python-socketio ``AsyncClient``s that
behave as the protocol asks when their hub goes away.

A ``Student`` draws one patch at a time (a new element each); when the transport
closes (``hub:closing``, or the connection drops) or an ack does not come within
``ACK_TIMEOUT_S``, it connects again (through the same URL: nginx picks a hub),
re-joins with ``since`` = its last acked seq and resends the patch it has no ack
for. A ``Tutor`` re-joins with ``since`` for every student and records every
``canvas:patches`` item, holding ``(epoch, seq)`` per canvas as a client does
(docs/protocol.md, "Relay"): items at or below what it holds that its last
catch-up covered are the overlap the protocol allows; others are doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import socketio

ACK_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)  # then 1 s each time
# Refusals the page resends (docs/protocol.md, "Offline"); any other drops the patch.
RESENT = {"RATE_LIMITED", "INTERNAL", "NOT_JOINED"}
MAX_PATCHES = 100_000
# Engine.IO's client logs "packet queue is empty, aborting" each time a hub closes a
# transport, which here is the point: the drill counts closings itself.
logging.getLogger("engineio.client").setLevel(logging.CRITICAL)


def elements_of(ops: list[dict[str, Any]]) -> set[str]:
    """The element ids a patch's ops touch (``/elements/<id>...``)."""
    return {op["path"].split("/")[2] for op in ops if op["path"].startswith("/elements/")}


def stroke(element: str, n: int) -> list[dict[str, Any]]:
    value = {"type": "stroke", "points": [[n % 1600, n % 1000], [n % 1600 + 1, n % 1000 + 2]]}
    return [{"op": "add", "path": f"/elements/{element}", "value": value}]


class Link:
    """One connection: a stock ``AsyncClient`` (no reconnection of its own), told
    when the hub said ``hub:closing`` or the transport closed."""

    def __init__(self, owner: RollClient) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.closed = asyncio.Event()
        self.ours = False  # we closed it ourselves

        async def closing(data: Any) -> None:
            owner.closings[str((data or {}).get("code"))] += 1
            owner.mark_broken("hub:closing")

        async def disconnect(*_: Any) -> None:
            # Once, and only for the connection in use: a late second call for a link
            # the client already left would count a recovery that never was.
            if not self.ours and not self.closed.is_set() and owner.link in (self, None):
                owner.mark_broken("transport closed")
            self.closed.set()

        self.sio.on("hub:closing", closing)
        self.sio.on("disconnect", disconnect)

    async def close(self) -> None:
        self.ours = True
        with contextlib.suppress(Exception):
            await self.sio.disconnect()
        self.closed.set()


@dataclass
class RollClient:
    """What student and tutor share: connecting (again) and joining, and the counts."""

    user_id: str
    token: str
    session_id: str
    urls: list[str]
    index: int = 0  # which of ``urls`` next (one URL behind nginx; the hubs with --direct)
    link: Link | None = None
    reconnections: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    closings: Counter[str] = field(default_factory=Counter)
    broken_at: float | None = None
    broken_by: str | None = None

    def mark_broken(self, why: str) -> None:
        if self.broken_at is None:
            self.broken_at, self.broken_by = time.monotonic(), why

    def on_link(self, link: Link) -> None:
        """Handlers of the subclass's own, on each new connection."""

    def on_joined(self, ack: dict[str, Any], since: dict[str, int] | None) -> None:
        """The join's answer (catch-up), before anything else is read on the connection."""

    async def connect(
        self, since: dict[str, int] | None, deadline: float, stop: asyncio.Event | None = None
    ) -> bool:
        """Connect and join (with ``since``), trying again with capped backoff until
        ``deadline`` (or ``stop``); whether it joined."""
        if self.link is not None:
            await self.link.close()
            self.link = None
        for attempt in range(10_000):
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return False
            link = Link(self)
            self.on_link(link)
            url = self.urls[self.index % len(self.urls)]
            try:
                await link.sio.connect(
                    url, auth={"token": self.token}, transports=["websocket"],
                    wait_timeout=CONNECT_TIMEOUT_S,
                )  # fmt: skip
                body: dict[str, Any] = {"session_id": self.session_id}
                if since is not None:
                    body["since"] = since
                ack = await link.sio.call("session:join", body, timeout=ACK_TIMEOUT_S)
                if not ack.get("ok"):
                    raise RuntimeError(f"join refused: {ack.get('error', {}).get('code')}")
                self.link = link
                self.on_joined(ack, since)
                return True
            except Exception as exc:
                self.connect_failures[_reason(exc)] += 1
                await link.close()
                self.index += 1
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        return False

    async def reconnect(
        self, since: dict[str, int] | None, deadline: float, stop: asyncio.Event | None = None
    ) -> bool:
        self.reconnections += 1
        self.index += 1
        return await self.connect(since, deadline, stop)

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]


@dataclass
class Student(RollClient):
    """Draws ``rate`` patches a second, one outstanding at a time."""

    rate: float = 5.0
    sent: int = 0
    acked: dict[int, str] = field(default_factory=dict)  # seq -> element
    conflicts: list[tuple[int, str, str]] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    dropped: list[str] = field(default_factory=list)  # refused for good
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    longest_gap_s: float = 0.0
    last_ack_at: float | None = None

    async def _send(self, element: str, n: int) -> dict[str, Any] | None:
        """The ack, or None if the transport closed first or none came in time."""
        assert self.link is not None
        link = self.link
        body = {"session_id": self.session_id, "ops": stroke(element, n)}
        self.sent += 1
        call = asyncio.ensure_future(link.sio.call("canvas:patch", body, timeout=ACK_TIMEOUT_S))
        gone = asyncio.ensure_future(link.closed.wait())
        try:
            await asyncio.wait([call, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not call.done():
            call.cancel()
            return None
        if call.cancelled() or call.exception() is not None:
            if not link.closed.is_set():
                self.mark_broken("ack missing")
            return None
        ack: dict[str, Any] = call.result()
        return ack

    def _acked(self, seq: int, element: str) -> None:
        now = time.monotonic()
        if seq in self.acked and self.acked[seq] != element:
            self.conflicts.append((seq, self.acked[seq], element))
        self.acked[seq] = element
        if self.broken_at is not None:
            self.recoveries.append(
                {"student": self.user_id, "why": self.broken_by,
                 "at": self.broken_at, "seconds": now - self.broken_at}
            )  # fmt: skip
            self.broken_at = self.broken_by = None
        if self.last_ack_at is not None:
            self.longest_gap_s = max(self.longest_gap_s, now - self.last_ack_at)
        self.last_ack_at = now

    async def run(self, stop: asyncio.Event, deadline: float) -> None:
        if not await self.connect(None, deadline):
            raise RuntimeError(f"{self.user_id} could not join: {dict(self.connect_failures)}")
        period = 1.0 / self.rate
        next_at = time.monotonic()
        n = 0
        while not stop.is_set() and n < MAX_PATCHES and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            if stop.is_set():
                break
            element = f"{self.user_id}-{n}"
            ack = await self._send(element, n)
            if ack is None or self.link is None or self.link.closed.is_set():
                since = {self.user_id: max(self.acked, default=0)}
                if not await self.reconnect(since, deadline, stop):
                    break
                continue  # the same patch again, at once
            if ack.get("ok"):
                self._acked(int(ack["seq"]), element)
                n += 1
                next_at = max(next_at + period, time.monotonic() - period)
                continue
            code = str(ack.get("error", {}).get("code"))
            self.refused[code] += 1
            if code == "NOT_JOINED":
                since = {self.user_id: max(self.acked, default=0)}
                if not await self.reconnect(since, deadline, stop):
                    break
            elif code in RESENT:
                await asyncio.sleep(0.1)
            else:
                self.dropped.append(element)
                n += 1
        if self.broken_at is not None and self.last_ack_at is not None:
            # Still without an ack when drawing stopped: that stretch counts too.
            self.longest_gap_s = max(self.longest_gap_s, time.monotonic() - self.last_ack_at)


@dataclass
class Canvas:
    """What the tutor holds of one student's canvas."""

    epoch: str | None = None
    seq: int = 0
    received: dict[int, set[str]] = field(default_factory=dict)  # seq -> elements, first delivery
    docs: list[tuple[int, set[str]]] = field(default_factory=list)  # (seq, elements) taken whole
    relayed_here: set[int] = field(default_factory=set)  # relayed on this connection
    catch_up: tuple[int, int] = (0, 0)  # (since, seq) of this connection's last catch-up
    last_relayed: int = 0  # on this connection
    relayed: int = 0
    overlaps: int = 0
    doubled: list[int] = field(default_factory=list)
    out_of_order: list[tuple[int, int]] = field(default_factory=list)
    gaps: int = 0
    epochs: set[str] = field(default_factory=set)
    epoch_log: list[tuple[float, str, str, int]] = field(default_factory=list)  # when, how
    syncing: bool = False

    def saw(self, how: str, epoch: str, seq: int) -> None:
        """Note where an epoch was first seen (a join, a sync, a relayed item)."""
        if epoch not in self.epochs:
            self.epochs.add(epoch)
            self.epoch_log.append((time.monotonic(), how, epoch, seq))


@dataclass
class Tutor(RollClient):
    """Watches a session's canvases and follows the tutor's rules for a re-join."""

    students: tuple[str, ...] = ()
    canvases: dict[str, Canvas] = field(default_factory=dict)
    syncs: int = 0
    early_relays: int = 0  # canvas:patches events that came before their join's answer
    _early: list[dict[str, Any]] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.canvases = {s: Canvas() for s in self.students}

    def on_link(self, link: Link) -> None:
        # A joining socket is in its rooms before its catch-up is computed: relays may
        # come before the join's answer. They wait for it, as a page's do.
        self._early = []
        link.sio.on("canvas:patches", self._relay)

    def on_joined(self, ack: dict[str, Any], since: dict[str, int] | None) -> None:
        for canvas in self.canvases.values():
            canvas.relayed_here, canvas.last_relayed = set(), 0
        for student, answer in ack.get("canvases", {}).items():
            if student in self.canvases:
                self._catch_up(student, answer, (since or {}).get(student, 0))
        early, self._early = self._early, None
        for data in early or []:
            self._items(data)

    def _catch_up(self, student: str, answer: dict[str, Any], since: int) -> None:
        """A join's or a sync's answer: the patches after ``since``, or the document."""
        canvas = self.canvases[student]
        canvas.epoch = answer["epoch"]
        canvas.saw("catch-up", answer["epoch"], answer["seq"])
        if "doc" in answer:
            canvas.docs.append((answer["seq"], set(answer["doc"]["elements"])))
        for patch in answer.get("ops", []):
            canvas.received.setdefault(patch["seq"], elements_of(patch["ops"]))
        canvas.seq = max(canvas.seq, answer["seq"]) if "ops" in answer else answer["seq"]
        canvas.catch_up = (since, answer["seq"])

    async def _relay(self, data: dict[str, Any]) -> None:
        if self._early is not None:
            self.early_relays += 1
            self._early.append(data)
        else:
            self._items(data)

    def _items(self, data: dict[str, Any]) -> None:
        for item in data["items"]:
            canvas = self.canvases.get(item["student_id"])
            if canvas is not None:
                self._item(item["student_id"], canvas, item)

    def _item(self, student: str, canvas: Canvas, item: dict[str, Any]) -> None:
        seq, epoch = int(item["seq"]), item["epoch"]
        canvas.relayed += 1
        canvas.saw("relay", epoch, seq)
        canvas.received.setdefault(seq, elements_of(item["ops"]))
        if seq < canvas.last_relayed:
            canvas.out_of_order.append((canvas.last_relayed, seq))
        canvas.last_relayed = max(canvas.last_relayed, seq)
        again = seq in canvas.relayed_here
        canvas.relayed_here.add(seq)
        if epoch != canvas.epoch:
            self._sync(student, canvas.seq)  # a reset stream: take what a sync answers
            return
        since, caught_up = canvas.catch_up
        if seq <= canvas.seq:
            if not again and since < seq <= caught_up:
                canvas.overlaps += 1  # the join's catch-up and the relay overlap
            else:
                canvas.doubled.append(seq)
            return
        if seq > canvas.seq + 1:
            canvas.gaps += 1
            self._sync(student, canvas.seq)
        canvas.seq = seq

    def _sync(self, student: str, since: int) -> None:
        link, canvas = self.link, self.canvases[student]
        if link is None or canvas.syncing:
            return
        canvas.syncing = True

        async def sync() -> None:
            body = {"session_id": self.session_id, "student_id": student, "since": since}
            with contextlib.suppress(Exception):  # a lost connection: the re-join catches up
                answer = await link.sio.call("canvas:sync", body, timeout=ACK_TIMEOUT_S)
                if answer.get("ok"):
                    self._catch_up(student, answer, since)
            canvas.syncing = False

        self.syncs += 1
        task = asyncio.create_task(sync())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def since(self) -> dict[str, int]:
        return {s: c.seq for s, c in self.canvases.items()}

    async def run(self, stop: asyncio.Event, deadline: float) -> None:
        """Stay joined until ``stop``: after each lost connection, join again with ``since``."""
        if not await self.connect(None, deadline):
            raise RuntimeError(f"{self.user_id} could not join: {dict(self.connect_failures)}")
        while not stop.is_set() and time.monotonic() < deadline:
            assert self.link is not None
            closed = asyncio.ensure_future(self.link.closed.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([closed, stopping], return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stopping.cancel()
            if stop.is_set():
                break
            if not await self.reconnect(self.since(), deadline):
                return
            self.broken_at = self.broken_by = None
        for task in list(self._tasks):
            task.cancel()
