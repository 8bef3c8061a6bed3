"""One contract suite for ``presence.tracker.PresenceTracker``, run against every backend.

Every test asserts what the Protocol's docstrings promise (``presence/tracker.py``),
as ``presence/live.py`` relies on it. The ``backend`` fixture yields each backend
in turn; ``Backend.new_hub`` gives a tracker as one hub process would have it.

Which contract items apply to which backend is said by a capability flag,
``Backend.shared`` (several hubs share the students' presence). The memory backend
is one process by design: the tests of two hubs sharing state are not its
contract and are generated only for shared backends, from the flag
(``params(shared_only=True)``). Everything else runs on both backends.

Redis is real, on the worker's own database (``tests.conftest.REDIS_URL``), flushed
before and after each test; under ``CI=true`` a missing Redis fails the test.
Grace periods run on the wall clock inside the backends (no clock argument): a
test that needs one to run out gives a short one and polls with a deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from presence.activity import StudentKey
from presence.tracker import Arrival, Departure, PresenceTracker
from presence.tracker_memory import MemoryPresenceTracker
from presence.tracker_redis import RedisPresenceTracker
from realtime.bus.bus_redis import redis_client
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.support import eventually

# Long enough that it never runs out within a test; short enough to run out at once.
LONG_GRACE_S = 600.0
SHORT_GRACE_S = 0.05


@dataclass(frozen=True)
class Capabilities:
    # Several hubs (tracker instances, in as many processes) share the presence.
    shared: bool


CAPABILITIES = {
    "memory": Capabilities(shared=False),
    "redis": Capabilities(shared=True),
}


def params(*, shared_only: bool = False) -> list[Any]:
    """The backends, as parameters of the ``backend`` fixture; with ``shared_only``,
    only those shared between hubs (the contract's 'across hubs' items are not the
    contract of a tracker that is one process alone by design)."""
    return [
        pytest.param(name, id=name)
        for name, caps in CAPABILITIES.items()
        if caps.shared or not shared_only
    ]


@dataclass
class Backend:
    name: str
    caps: Capabilities
    new_hub: Callable[[], Awaitable[PresenceTracker]]
    hubs: list[PresenceTracker] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return self.caps.shared


@pytest.fixture(params=params())
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    name: str = request.param
    caps = CAPABILITIES[name]
    if name == "memory":
        made: list[PresenceTracker] = []

        async def new_memory_hub() -> PresenceTracker:
            # One process alone: a second "hub" would be another process that shares
            # nothing; the shared-only tests do not ask for one.
            assert not made, "the memory backend is one hub alone"
            tracker = MemoryPresenceTracker()
            await tracker.start()
            made.append(tracker)
            return tracker

        found = Backend(name, caps, new_memory_hub, made)
        yield found
        for tracker in made:
            await tracker.close()
        return

    assert name == "redis"
    need_service("Redis", await redis_problem())
    client = redis_client(REDIS_URL)
    await client.flushdb()  # the worker's own database (tests.conftest)
    trackers: list[PresenceTracker] = []

    async def new_redis_hub() -> PresenceTracker:
        tracker = RedisPresenceTracker(client, node_id=f"hub-{uuid.uuid4().hex[:8]}")
        await tracker.start()
        trackers.append(tracker)
        return tracker

    try:
        yield Backend(name, caps, new_redis_hub, trackers)
    finally:
        for tracker in trackers:
            await tracker.close()
        await client.flushdb()
        await client.aclose()


def student(n: int = 1, session: str = "s1", center: str = "c1") -> StudentKey:
    return (center, session, f"st{n}")


def at(seconds: float = 0) -> datetime:
    """A wall-clock moment with microseconds and a zone, as the hub's clock gives."""
    return datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC) + timedelta(seconds=seconds)


async def due_departures(tracker: PresenceTracker, count: int) -> list[Departure]:
    """Claim departures until ``count`` came (the short grace runs out), with a deadline."""
    claimed: list[Departure] = []

    async def claim() -> bool:
        claimed.extend(await tracker.departures())
        return len(claimed) >= count

    await eventually(claim, within=5, what=f"{count} departures")
    return claimed


# -- counting connections ----------------------------------------------------


async def test_online_on_the_first_connection_offline_on_the_last(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    assert await tracker.connect(key, "tab-1") is Arrival.ONLINE
    assert await tracker.connect(key, "tab-2") is Arrival.ALREADY
    assert await tracker.connect(key, "tab-3") is Arrival.ALREADY
    assert await tracker.disconnect(key, "tab-2", at(), 0) is False
    assert await tracker.disconnect(key, "tab-1", at(), 0) is False
    assert await tracker.disconnect(key, "tab-3", at(), 0) is True
    # Counted from zero again: the next connection brings them online anew.
    assert await tracker.connect(key, "tab-4") is Arrival.ONLINE


async def test_a_retried_join_or_leave_never_double_counts(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    assert await tracker.connect(key, "tab-1") is Arrival.ONLINE
    assert await tracker.connect(key, "tab-1") is Arrival.ALREADY  # retried join
    assert await tracker.connect(key, "tab-2") is Arrival.ALREADY
    assert await tracker.disconnect(key, "tab-1", at(), 0) is False
    assert await tracker.disconnect(key, "tab-1", at(), 0) is False  # retried leave
    # tab-1 counted once: tab-2 is the last one.
    assert await tracker.disconnect(key, "tab-2", at(), 0) is True
    assert await tracker.disconnect(key, "tab-2", at(), 0) is False


async def test_leaving_with_a_connection_never_counted_changes_nothing(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    assert await tracker.disconnect(key, "never-joined", at(), LONG_GRACE_S) is False
    assert await tracker.departures(everyone=True) == []
    assert await tracker.connect(key, "tab-1") is Arrival.ONLINE  # not RESUMED
    assert await tracker.disconnect(key, "other-tab", at(), 0) is False
    assert await tracker.connect(key, "tab-2") is Arrival.ALREADY  # tab-1 still counts


async def test_students_sessions_and_centers_are_counted_apart(backend: Backend) -> None:
    tracker = await backend.new_hub()
    keys = [student(1), student(2), student(1, session="s2"), student(1, center="c2")]
    # One connection id on all of them (a socket joined to several sessions).
    for key in keys:
        assert await tracker.connect(key, "sock") is Arrival.ONLINE, key
    for key in keys:
        assert await tracker.disconnect(key, "sock", at(), 0) is True, key


# -- grace periods and departures ----------------------------------------------


async def test_without_grace_the_caller_marks_them_offline(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    await tracker.connect(key, "tab-1")
    assert await tracker.disconnect(key, "tab-1", at(), 0) is True
    assert await tracker.departures(everyone=True) == []  # nothing is leaving
    assert await tracker.connect(key, "tab-2") is Arrival.ONLINE


async def test_back_within_the_grace_period_resumes_the_same_stretch(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    assert await tracker.connect(key, "tab-1") is Arrival.ONLINE
    assert await tracker.disconnect(key, "tab-1", at(), LONG_GRACE_S) is True
    assert await tracker.departures() == []  # not due yet
    assert await tracker.connect(key, "tab-2") is Arrival.RESUMED
    # Resumed: no departure for them, now or ever.
    assert await tracker.departures(everyone=True) == []
    # And the resumed stretch counts connections as before.
    assert await tracker.connect(key, "tab-3") is Arrival.ALREADY
    assert await tracker.disconnect(key, "tab-2", at(), 0) is False
    assert await tracker.disconnect(key, "tab-3", at(), 0) is True


async def test_a_departure_is_handed_out_once_when_the_grace_runs_out(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    await tracker.connect(key, "tab-1")
    assert await tracker.disconnect(key, "tab-1", at(), SHORT_GRACE_S) is True
    assert await due_departures(tracker, 1) == [Departure(key, at())]
    assert await tracker.departures() == []
    assert await tracker.departures(everyone=True) == []
    # Handed out: coming back now is a new stretch.
    assert await tracker.connect(key, "tab-2") is Arrival.ONLINE


async def test_only_the_departures_that_are_due_are_claimed(backend: Backend) -> None:
    tracker = await backend.new_hub()
    quick, slow = student(1), student(2)
    for key in (quick, slow):
        await tracker.connect(key, "tab")
    assert await tracker.disconnect(slow, "tab", at(1), LONG_GRACE_S) is True
    assert await tracker.disconnect(quick, "tab", at(2), SHORT_GRACE_S) is True
    assert await due_departures(tracker, 1) == [Departure(quick, at(2))]
    assert await tracker.departures() == []
    assert await tracker.connect(slow, "tab") is Arrival.RESUMED


async def test_everyone_claims_all_the_students_leaving(backend: Backend) -> None:
    """What a lone hub that stops does (``LiveHub.stop_grace_timers``)."""
    tracker = await backend.new_hub()
    keys = [student(1), student(2), student(3, session="s2")]
    for n, key in enumerate(keys):
        await tracker.connect(key, "tab")
        assert await tracker.disconnect(key, "tab", at(n), LONG_GRACE_S) is True
    staying = student(4)
    await tracker.connect(staying, "tab")
    claimed = await tracker.departures(everyone=True)
    assert sorted(claimed, key=lambda d: d.key) == [Departure(k, at(n)) for n, k in enumerate(keys)]
    assert await tracker.departures(everyone=True) == []
    for key in keys:
        assert await tracker.connect(key, "tab-2") is Arrival.ONLINE
    assert await tracker.connect(staying, "tab-2") is Arrival.ALREADY


async def test_back_or_departed_never_both(backend: Backend) -> None:
    """Coming back just as the grace runs out: either ``connect`` says RESUMED or the
    departure is handed out, never both and never neither."""
    tracker = await backend.new_hub()
    for n in range(20):
        key = student(n)
        await tracker.connect(key, "tab-1")
        await tracker.disconnect(key, "tab-1", at(n), 0.001 * (n % 4))
        departures, arrival = await asyncio.gather(
            tracker.departures(), tracker.connect(key, "tab-2")
        )
        departures += await tracker.departures(everyone=True)
        handed_out = [d for d in departures if d.key == key]
        if arrival is Arrival.RESUMED:
            assert handed_out == [], (n, arrival, departures)
        else:
            assert arrival is Arrival.ONLINE, (n, arrival)
            # grace 0 (n % 4 == 0): nobody was leaving; otherwise it was handed out.
            assert handed_out == ([] if n % 4 == 0 else [Departure(key, at(n))]), (n, departures)


async def test_a_departure_keeps_the_moment_they_left(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = ("center-é", "session/1", "student:42")
    left_at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    await tracker.connect(key, "tab")
    await tracker.disconnect(key, "tab", left_at, LONG_GRACE_S)
    [departure] = await tracker.departures(everyone=True)
    assert departure == Departure(key, left_at)
    assert departure.left_at.tzinfo is not None and departure.left_at.utcoffset() == timedelta(0)


# -- recorded statuses ---------------------------------------------------------


async def test_the_last_told_status_of_each_student_is_recorded(backend: Backend) -> None:
    tracker = await backend.new_hub()
    assert await tracker.recorded("c1", "s1") == {}
    await tracker.record(student(1), "active")
    await tracker.record(student(2), "idle")
    await tracker.record(student(1), "offline")
    await tracker.record(student(1, session="s2"), "idle")
    await tracker.record(student(1, center="c2"), "active")
    assert await tracker.recorded("c1", "s1") == {"st1": "offline", "st2": "idle"}
    assert await tracker.recorded("c1", "s2") == {"st1": "idle"}
    assert await tracker.recorded("c2", "s1") == {"st1": "active"}
    assert await tracker.recorded("c2", "s2") == {}
    # The answer is the caller's to keep: changing it changes nothing recorded.
    got = await tracker.recorded("c1", "s1")
    got["st9"] = "active"
    assert await tracker.recorded("c1", "s1") == {"st1": "offline", "st2": "idle"}


async def test_statuses_are_recorded_apart_from_connections(backend: Backend) -> None:
    tracker = await backend.new_hub()
    key = student()
    await tracker.record(key, "active")
    await tracker.connect(key, "tab")
    await tracker.disconnect(key, "tab", at(), 0)
    assert await tracker.recorded("c1", "s1") == {"st1": "active"}
    assert await tracker.connect(key, "tab") is Arrival.ONLINE


# -- reaping -------------------------------------------------------------------


async def test_reaping_with_no_hub_gone_takes_nothing_out(backend: Backend) -> None:
    """A lone hub (memory) is its only hub; a shared one with every hub alive the same."""
    tracker = await backend.new_hub()
    key = student()
    await tracker.connect(key, "tab")
    assert await tracker.reap(at(), LONG_GRACE_S) == 0
    assert await tracker.connect(key, "tab") is Arrival.ALREADY
    assert await tracker.departures(everyone=True) == []
    assert await tracker.disconnect(key, "tab", at(), 0) is True


# -- two hubs sharing state (shared backends) --------------------------------


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_one_student_on_two_hubs_is_one_presence(backend: Backend) -> None:
    a, b = await backend.new_hub(), await backend.new_hub()
    key = student()
    assert await a.connect(key, "tab-on-a") is Arrival.ONLINE
    assert await b.connect(key, "tab-on-b") is Arrival.ALREADY
    assert await b.connect(key, "tab-on-a") is Arrival.ALREADY  # a join retried elsewhere
    assert await a.disconnect(key, "tab-on-a", at(), LONG_GRACE_S) is False
    assert await a.disconnect(key, "tab-on-a", at(), LONG_GRACE_S) is False
    assert await b.disconnect(key, "tab-on-b", at(1), LONG_GRACE_S) is True
    # Back on the other hub within the grace period: resumed there.
    assert await a.connect(key, "tab-2-on-a") is Arrival.RESUMED
    assert await b.departures(everyone=True) == []


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_concurrent_joins_on_two_hubs_come_online_once(backend: Backend) -> None:
    a, b = await backend.new_hub(), await backend.new_hub()
    for n in range(30):
        key = student(n)
        arrivals = await asyncio.gather(a.connect(key, "on-a"), b.connect(key, "on-b"))
        assert sorted(arrivals) == sorted([Arrival.ONLINE, Arrival.ALREADY]), (n, arrivals)
        went = await asyncio.gather(
            a.disconnect(key, "on-a", at(), 0), b.disconnect(key, "on-b", at(), 0)
        )
        assert sorted(went) == [False, True], (n, went)


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_a_departure_is_claimed_by_one_hub_only(backend: Backend) -> None:
    a, b = await backend.new_hub(), await backend.new_hub()
    keys = [student(n) for n in range(10)]
    for n, key in enumerate(keys):
        await a.connect(key, "tab")
        await a.disconnect(key, "tab", at(n), SHORT_GRACE_S)
    claimed: list[Departure] = []

    async def claim() -> bool:
        for found in await asyncio.gather(a.departures(), b.departures()):
            claimed.extend(found)
        return len(claimed) >= len(keys)

    await eventually(claim, within=5, what="the departures")
    assert sorted(claimed, key=lambda d: d.key) == [Departure(k, at(n)) for n, k in enumerate(keys)]
    assert await a.departures(everyone=True) == await b.departures(everyone=True) == []


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_every_hub_sees_the_recorded_statuses(backend: Backend) -> None:
    a, b = await backend.new_hub(), await backend.new_hub()
    await a.record(student(1), "idle")
    await b.record(student(2), "active")
    assert (
        await a.recorded("c1", "s1")
        == await b.recorded("c1", "s1")
        == {
            "st1": "idle",
            "st2": "active",
        }
    )


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_the_connections_of_a_hub_that_died_are_reaped_once(backend: Backend) -> None:
    """A hub gone without disconnecting its students: another hub's sweep takes its
    connections out as if they had left at ``now``, so they go through the grace
    period; a student also connected elsewhere stays online."""
    dead, alive, third = await backend.new_hub(), await backend.new_hub(), await backend.new_hub()
    only_there, also_here = student(1), student(2)
    assert await dead.connect(only_there, "tab-1") is Arrival.ONLINE
    assert await dead.connect(also_here, "tab-2") is Arrival.ONLINE
    assert await alive.connect(also_here, "tab-3") is Arrival.ALREADY
    # Enough more that two hubs sweeping together would overlap while reaping them.
    crowd = [student(n, session="s2") for n in range(40)]
    for key in crowd:
        assert await dead.connect(key, "tab") is Arrival.ONLINE
    # Stops beating without taking its connections out (as a killed hub's heartbeat
    # runs out: close() ends it at once, and keeps what it still holds to be reaped).
    await dead.close()
    now = at(30)
    reaped = await asyncio.gather(alive.reap(now, LONG_GRACE_S), third.reap(now, LONG_GRACE_S))
    assert sorted(reaped) == [0, 2 + len(crowd)]
    assert await alive.reap(now, LONG_GRACE_S) == 0
    assert await third.reap(now, LONG_GRACE_S) == 0
    # Leaving since ``now``; the other still online through their tab on ``alive``.
    leaving = await third.departures(everyone=True)
    assert sorted(leaving, key=lambda d: d.key) == [
        Departure(key, now) for key in sorted([only_there, *crowd])
    ]
    assert await alive.connect(also_here, "tab-3") is Arrival.ALREADY
    assert await alive.disconnect(also_here, "tab-3", at(31), 0) is True


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_with_no_grace_period_a_dead_hubs_students_depart_at_once(
    backend: Backend,
) -> None:
    """Nobody else will mark them offline: the sweep that reaps them hands them out."""
    dead, alive = await backend.new_hub(), await backend.new_hub()
    key = student()
    await dead.connect(key, "tab-on-dead")
    await dead.close()
    now = at()
    assert await alive.reap(now, 0) == 1
    assert await alive.departures() == [Departure(key, now)]
    assert await alive.departures(everyone=True) == []


@pytest.mark.parametrize("backend", params(shared_only=True), indirect=True)
async def test_a_student_reaped_with_a_grace_period_can_resume(backend: Backend) -> None:
    dead, alive = await backend.new_hub(), await backend.new_hub()
    key = student()
    await dead.connect(key, "tab-on-dead")
    await dead.close()
    assert await alive.reap(at(), LONG_GRACE_S) == 1
    assert await alive.connect(key, "tab-on-alive") is Arrival.RESUMED
    assert await alive.departures(everyone=True) == []


# -- many students at once -------------------------------------------------------

# More students leaving together than a backend might claim in one go.
CROWD = 1200


async def leave_together(tracker: PresenceTracker, grace_s: float) -> list[StudentKey]:
    keys = [student(n) for n in range(CROWD)]
    for key in keys:
        await tracker.connect(key, "tab")
    for key in keys:
        await tracker.disconnect(key, "tab", at(), grace_s)
    return keys


async def test_everyone_means_all_the_students_leaving(backend: Backend) -> None:
    """A lone hub stopping marks everyone leaving offline with one call
    (``LiveHub.stop_grace_timers``): ``everyone`` is all of them, however many."""
    tracker = await backend.new_hub()
    keys = await leave_together(tracker, LONG_GRACE_S)
    claimed = await tracker.departures(everyone=True)
    assert len(claimed) == CROWD
    assert sorted(d.key for d in claimed) == sorted(keys)
    assert await tracker.departures(everyone=True) == []


async def test_every_due_departure_is_handed_out_once(backend: Backend) -> None:
    """Sweep after sweep, every student whose grace ran out comes out exactly once
    (a backend may hand them out over several claims)."""
    tracker = await backend.new_hub()
    keys = await leave_together(tracker, SHORT_GRACE_S)
    claimed = await due_departures(tracker, CROWD)
    assert sorted(d.key for d in claimed) == sorted(keys)
    assert await tracker.departures(everyone=True) == []
