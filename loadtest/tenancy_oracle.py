"""Who may see what, from docs/protocol.md: the tenancy soak's oracle (issue 19).

Pure bookkeeping, no I/O. The soak tells it which sessions each connection has
joined (or is joining), and hands it every hub -> client event a connection
receives; it counts each delivery the protocol forbids, by kind:

- ``unknown_event``: an event name the protocol does not list;
- ``no_session``: a session event without a ``session_id``;
- ``other_center``: an event of another center's session (anyone but a super admin);
- ``not_member``: an event of a session of the caller's center this connection has
  not joined (or was refused, or has left);
- ``staff_only_event``: ``presence:update``, ``progress:update``,
  ``attendance:update`` or a staff alert at a student;
- ``student_only_event``: ``help:position`` at staff;
- ``other_student_data``: a student sees another student's id anywhere in a payload
  (ids, canvas items, timers, announcements, help requests, element ids);
- ``foreign_student``: staff see, in one session's event, a student not enrolled
  in that session;
- ``other_center_data``: anyone but a super admin sees another center's user id;
- ``note_leak``: any pushed payload carrying a note's text (notes are never pushed);
- ``echo``: a student's patch relayed back to the socket that sent it.

A socket's membership ends with its leave's ack, and with the ``session:ended`` or
``session:removed`` it receives: anything of that session after it is ``not_member``.

Every user id is ``ctr<N>-<name>`` (its center ``ctr<N>``) and every student's
``ctr<N>-st<NN>``,
so a payload is scanned for ids as text: nothing another student owns can reach a
student under any field name without showing up.

It also keeps what the protocol promises: a marker (an announcement's text, a
timer's id, an exercise's id, a canvas element's ``m`` value, a help request's id
and status, a session's end or removal) expected at a set of connections;
``missing`` is what never came, and ``missing_at_end`` what never came of what was
promised less than ``END_RACE_S`` before its session ended.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

try:
    import orjson

    def _text(value: Any) -> str:
        return orjson.dumps(value).decode()
except ImportError:  # pragma: no cover - orjson is in the loadtest extra
    import json

    def _text(value: Any) -> str:
        return json.dumps(value)


STAFF = frozenset({"TUTOR", "OBSERVER"})
# Hub -> client events of docs/protocol.md, "Hub -> client events".
SESSION_EVENTS = frozenset(
    {
        "presence:update",
        "canvas:patches",
        "mode:changed",
        "exercise:assigned",
        "progress:update",
        "help:updated",
        "help:position",
        "timer:started",
        "timer:cancelled",
        "timer:alert",
        "attendance:update",
        "session:ended",
        "announcement",
        "session:removed",
    }
)
KNOWN_EVENTS = SESSION_EVENTS | {"hub:closing"}
STAFF_ONLY = frozenset({"presence:update", "progress:update", "attendance:update"})
# timer:alert kinds a student may get (their own or session-wide timers, the session's end).
STUDENT_ALERTS = frozenset({"TIMER_WARNING", "TIMER_END", "SESSION_ENDING"})
# "ctr" is no hex: a session's UUID cannot hold a match.
USER_ID = re.compile(r"(ctr\d+)-(?:st\d\d|[a-z]+)")
STUDENT_ID = re.compile(r"ctr\d+-st\d\d")
NOTE_MARK = "note~"
# A delivery promised this little before its session's end is acked is counted apart
# (``missing_at_end``): the end takes every socket out of the session, and a relay
# still on its way (through Redis, from another hub) then has no one to reach.
END_RACE_S = 1.0
KINDS = (
    "unknown_event",
    "no_session",
    "other_center",
    "not_member",
    "staff_only_event",
    "student_only_event",
    "other_student_data",
    "foreign_student",
    "other_center_data",
    "note_leak",
    "echo",
)


def center_of(user_id: str) -> str:
    return user_id.split("-", 1)[0]


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    center: str
    tutor: str
    students: frozenset[str]


@dataclass
class Conn:
    """One connection as the oracle sees it; ``tag`` names it in canvas markers."""

    index: int
    user: str
    role: str  # the token's Role value
    center: str
    tag: str
    # session id -> live role ("TUTOR", "OBSERVER", "STUDENT") while joined or joining
    member: dict[str, str] = field(default_factory=dict)


def live_role(conn: Conn, session: SessionInfo) -> str | None:
    """What ``session:join`` must grant, from "Who may do what live"; None: refused."""
    if conn.role == "SUPER_ADMIN":
        return "OBSERVER"
    if conn.center != session.center:
        return None
    if conn.role == "TUTOR":
        return "TUTOR" if conn.user == session.tutor else None
    if conn.role in ("CENTER_ADMIN", "SUPERVISOR"):
        return "OBSERVER"
    if conn.role == "STUDENT":
        return "STUDENT" if conn.user in session.students else None
    return None


class Oracle:
    def __init__(self, sessions: list[SessionInfo], conns: list[Conn]) -> None:
        self.sessions = {s.session_id: s for s in sessions}
        self.conns = conns
        self.violations: Counter[str] = Counter()
        self.by_event: Counter[tuple[str, str]] = Counter()
        self.examples: list[dict[str, Any]] = []
        self.received: Counter[str] = Counter()
        self.expected: dict[tuple[str, str], set[int]] = {}
        self.expected_total = 0
        self.delivered_expected = 0
        # Every marker delivered, and to whom: an event may come before the ack that
        # makes the soak expect it.
        self.seen: dict[tuple[str, str], set[int]] = {}
        self.ended: set[str] = set()
        self.ended_at: dict[str, float] = {}
        # Ends told to a socket of a user entitled to the session while the oracle held
        # it out of the session (see _judge): reported, not violations.
        self.end_notices_unjoined = 0
        # Help request ids are opaque: whose each is comes from the acks of help:request,
        # and the queues received are checked against that at the end (check_queues).
        self.help_ids: dict[str, tuple[str, str]] = {}
        self.queues: list[tuple[Conn, str, tuple[str, ...]]] = []
        self.queue_ids_unknown = 0
        self.queue_ids_checked = 0
        self.expected_at: dict[tuple[str, str], float] = {}
        self.expected_in: dict[tuple[str, str], str] = {}
        self.removed: set[tuple[str, str]] = set()

    # What the soak tells it.

    def may_join(self, conn: Conn, session_id: str) -> str | None:
        """The live role a join sent now must get; None: it must be refused."""
        if session_id in self.ended or (session_id, conn.user) in self.removed:
            return None
        return live_role(conn, self.sessions[session_id])

    def joining(self, conn: Conn, session_id: str) -> None:
        """A join was sent: events may come before its ack, if it is to be granted."""
        role = self.may_join(conn, session_id)
        if role is not None:
            conn.member[session_id] = role

    def session_ended(self, session_id: str, at: float | None = None) -> None:
        """The end was acked (``at``, ``time.monotonic()``): from now on no join is granted."""
        self.ended.add(session_id)
        self.ended_at[session_id] = time.monotonic() if at is None else at

    def student_removed(self, session_id: str, student: str) -> None:
        """The enrollment's removal was answered: from now on no join of theirs is granted."""
        self.removed.add((session_id, student))

    def left(self, conn: Conn, session_id: str) -> None:
        """A leave was acked (events until its ack are allowed)."""
        conn.member.pop(session_id, None)

    def expect(
        self, session_id: str, kind: str, marker: str, conns: list[int], at: float | None = None
    ) -> None:
        """The protocol promises ``marker`` (of event ``kind`` in the session) to each
        of ``conns``."""
        if not conns:
            return
        self.expected_in[(kind, marker)] = session_id
        self.expected_at[(kind, marker)] = time.monotonic() if at is None else at
        self.expected_total += len(conns)
        seen = self.seen.get((kind, marker), set())
        self.delivered_expected += len(seen.intersection(conns))
        left = set(conns) - seen
        if left:
            self.expected.setdefault((kind, marker), set()).update(left)

    def ack(self, conn: Conn, session_id: str, ack: Any) -> None:
        """A granted ``session:join``'s ack: a student's holds only their own data."""
        session = self.sessions[session_id]
        text = _text(ack)
        found = []
        if conn.role != "SUPER_ADMIN" and any(
            m.group(1) != conn.center for m in USER_ID.finditer(text)
        ):
            found.append("other_center_data")
        if conn.member.get(session_id) == "STUDENT":
            if any(s != conn.user for s in STUDENT_ID.findall(text)):
                found.append("other_student_data")
        elif any(s not in session.students for s in STUDENT_ID.findall(text)):
            found.append("foreign_student")
        for kind in found:
            self.violations[kind] += 1
            self.by_event[(kind, "session:join ack")] += 1
            if len(self.examples) < 20:
                self.examples.append(
                    {
                        "kind": kind,
                        "to": conn.user,
                        "conn": conn.tag,
                        "event": "session:join ack",
                        "payload": text[:400],
                    }
                )

    def missing_examples(self, limit: int = 20) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key, left in self.expected.items():
            if left and len(out) < limit:
                session_id = self.expected_in.get(key, "")
                out.append({
                    "event": key[0], "marker": key[1], "session_id": session_id,
                    "session_ended": session_id in self.ended, "at_end": self.at_end(key),
                    "to": sorted(self.conns[i].tag for i in left),
                })  # fmt: skip
        return out

    def help_request(self, help_id: str, session_id: str, student: str) -> None:
        """``help:request`` was acked: the request ``help_id`` is ``student``'s in the session."""
        self.help_ids[help_id] = (session_id, student)

    def check_queues(self) -> None:
        """Every ``help:updated`` queue received: a student's holds only their own
        requests, staff's only their session's (``other_student_data``,
        ``foreign_student``). Run once, after the drain."""
        for conn, session_id, queue in self.queues:
            for help_id in queue:
                owner = self.help_ids.get(help_id)
                self.queue_ids_checked += owner is not None
                if owner is None:
                    self.queue_ids_unknown += 1
                elif owner[0] != session_id:
                    self._count(conn, "foreign_student", "help:updated queue", help_id)
                elif conn.role == "STUDENT" and owner[1] != conn.user:
                    self._count(conn, "other_student_data", "help:updated queue", help_id)
        self.queues.clear()

    def _count(self, conn: Conn, kind: str, event: str, text: str) -> None:
        self.violations[kind] += 1
        self.by_event[(kind, event)] += 1
        if len(self.examples) < 20:
            self.examples.append(
                {"kind": kind, "to": conn.user, "conn": conn.tag, "event": event, "payload": text}
            )

    def at_end(self, key: tuple[str, str]) -> bool:
        """Was this expected within ``END_RACE_S`` before its session's end was acked?"""
        ended_at = self.ended_at.get(self.expected_in.get(key, ""))
        return ended_at is not None and ended_at - self.expected_at[key] < END_RACE_S

    def missing(self, *, at_end: bool = False) -> Counter[str]:
        """Promised deliveries that never came; ``at_end``: only those promised just
        before their session ended (else all others)."""
        out: Counter[str] = Counter()
        for key, left in self.expected.items():
            if left and self.at_end(key) == at_end:
                out[key[0]] += len(left)
        return out

    # What a connection received.

    def receive(self, conn: Conn, event: str, payload: Any) -> None:
        self.received[event] += 1
        for kind in self._judge(conn, event, payload):
            self.violations[kind] += 1
            self.by_event[(kind, event)] += 1
            if len(self.examples) < 20:
                self.examples.append(
                    {
                        "kind": kind,
                        "to": conn.user,
                        "conn": conn.tag,
                        "event": event,
                        "payload": _text(payload)[:400],
                    }
                )
        if isinstance(payload, dict):
            self._delivered(conn, event, payload)
            if event in ("session:ended", "session:removed"):
                # The hub has taken this socket out of the session: nothing more of it.
                conn.member.pop(str(payload.get("session_id")), None)

    def _judge(self, conn: Conn, event: str, payload: Any) -> list[str]:
        if event not in KNOWN_EVENTS:
            return ["unknown_event"]
        if event == "hub:closing":
            return []
        session_id = payload.get("session_id") if isinstance(payload, dict) else None
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            return ["no_session"]
        text = _text(payload)
        found: list[str] = []
        if NOTE_MARK in text:
            found.append("note_leak")
        if conn.role != "SUPER_ADMIN":
            if session.center != conn.center:
                return [*found, "other_center"]
            if any(m.group(1) != conn.center for m in USER_ID.finditer(text)):
                found.append("other_center_data")
        role = conn.member.get(session.session_id)
        if role is None and event == "session:ended" and live_role(conn, session) is not None:
            # The hub tells every socket it holds in the session as it processes the
            # end, and a join or leave of this socket may race that end (the oracle
            # counts membership from the join sent to the leave acked). Telling a user
            # entitled to the session that it ended leaks nothing: counted apart.
            self.end_notices_unjoined += 1
            return found
        if role is None:
            return [*found, "not_member"]
        if role in STAFF:
            if event == "help:updated":
                self.queues.append((conn, session.session_id, tuple(payload.get("queue") or ())))
            if event == "help:position":
                found.append("student_only_event")
            if any(s not in session.students for s in STUDENT_ID.findall(text)):
                found.append("foreign_student")
            return found
        if event in STAFF_ONLY or (
            event == "timer:alert" and payload.get("kind") not in STUDENT_ALERTS
        ):
            found.append("staff_only_event")
        if any(s != conn.user for s in STUDENT_ID.findall(text)):
            found.append("other_student_data")
        if event == "help:updated":
            self.queues.append((conn, session.session_id, tuple(payload.get("queue") or ())))
        if event == "canvas:patches":
            for item in payload.get("items", ()):
                if any(m.split(":", 1)[0] == conn.tag for m in _markers(item)):
                    found.append("echo")
                    break
        return found

    def _delivered(self, conn: Conn, event: str, payload: dict[str, Any]) -> None:
        keys: list[tuple[str, str]] = []
        if event == "canvas:patches":
            keys = [("canvas:patches", m) for i in payload.get("items", ()) for m in _markers(i)]
        elif event == "announcement":
            keys = [(event, str(payload.get("text")))]
        elif event in ("timer:started", "timer:cancelled"):
            keys = [(event, str((payload.get("timer") or {}).get("id")))]
        elif event == "exercise:assigned":
            keys = [(event, str((payload.get("exercise") or {}).get("id")))]
        elif event == "progress:update":
            keys = [(event, f"{payload.get('exercise_id')}:{payload.get('progress_pct')}")]
        elif event in ("session:ended", "session:removed"):
            keys = [(event, str(payload.get("session_id")))]
        elif event == "help:updated":
            help_request = payload.get("help_request") or {}
            keys = [(event, f"{help_request.get('id')}:{help_request.get('status')}")]
        for key in keys:
            self.seen.setdefault(key, set()).add(conn.index)
            left = self.expected.get(key)
            if left is not None and conn.index in left:
                left.discard(conn.index)
                self.delivered_expected += 1

    def summary(self) -> dict[str, Any]:
        return {
            "violations": sum(self.violations.values()),
            "violations_by_kind": {k: self.violations.get(k, 0) for k in KINDS},
            "violations_by_event": {f"{k} {e}": n for (k, e), n in self.by_event.items()},
            "violation_examples": self.examples,
            "received_by_event": dict(sorted(self.received.items())),
            "expected_deliveries": self.expected_total,
            "expected_delivered": self.delivered_expected,
            "help_queue_ids_checked": self.queue_ids_checked,
            "help_queue_ids_unknown": self.queue_ids_unknown,
            "missing": sum(self.missing().values()),
            "missing_by_event": dict(self.missing()),
            "missing_at_end": sum(self.missing(at_end=True).values()),
            "missing_at_end_by_event": dict(self.missing(at_end=True)),
            "missing_examples": self.missing_examples(),
            "end_notices_unjoined": self.end_notices_unjoined,
        }


def _markers(item: Any) -> list[str]:
    """The ``m`` values of a relayed item's ops (``<conn tag>:<n>``)."""
    out = []
    if isinstance(item, dict):
        for op in item.get("ops") or ():
            value = op.get("value") if isinstance(op, dict) else None
            if isinstance(value, dict) and isinstance(value.get("m"), str):
                out.append(value["m"])
    return out
