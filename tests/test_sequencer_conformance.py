"""The sequencer contract (``canvas.sequencer``), run against every backend.

Each test of the first part runs on the local sequencer and on the leased one
(real Redis: missing, the Redis cases skip, or fail under ``CI=true``), like
centrifuge's shared broker tests. The second part holds what only a shared
sequencer promises: two instances (two hubs) on one Redis. How the store hands
canvases from hub to hub, and takes over a dead hub's, is in
``tests/test_canvas_redis.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio

from canvas import wire
from canvas.document import Author
from canvas.sequencer import GAP, NO_BOUND, OTHER_EPOCH, Sequencer
from canvas.sequencer_leased import LeasedSequencer
from canvas.sequencer_local import LocalSequencer, initial_epoch
from canvas.store import CanvasKey, Patch
from realtime.bus.bus import CANVAS, session_channel, unframe
from realtime.bus.bus_redis import redis_client
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.support import eventually

KEY = CanvasKey("c1", "session-1", "s1")
OTHER = CanvasKey("c1", "session-1", "s2")
EPOCH = "e1"
AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

Make = Callable[[str], LeasedSequencer]  # hubs on one Redis


def same(got: Patch) -> tuple[Any, ...]:
    """A patch's fields, its encoded ops as bytes (fragments compare by identity)."""
    return (got.seq, got.epoch, got.author, got.author_id, got.ops, got.at)


def patch(seq: int, epoch: str = EPOCH, name: str = "") -> Patch:
    ops = [{"op": "add", "path": f"/elements/{name or seq}", "value": {"type": "stroke"}}]
    return Patch.of(seq, epoch, Author.STUDENT, "student-1", ops, AT)


def run(first: int, last: int) -> list[Patch]:
    """Patches ``first`` to ``last``: what a commit hands ``advance``."""
    return [patch(seq) for seq in range(first, last + 1)]


@asynccontextmanager
async def redis_with_prefix() -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    """The test Redis, and a key prefix of this test's own (its keys deleted after)."""
    need_service("Redis", await redis_problem())
    client = redis_client(REDIS_URL)
    prefix = f"test:{uuid.uuid4().hex[:12]}:cv:"
    try:
        yield client, prefix
    finally:
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.delete(name)
        await client.aclose()


@pytest.fixture
async def shared_redis() -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    async with redis_with_prefix() as shared:
        yield shared


@pytest.fixture
async def redis_sequencers(
    shared_redis: tuple[redis.asyncio.Redis, str],
) -> AsyncIterator[Make]:
    """Redis sequencers on one Redis and key prefix: hubs sharing the canvases."""
    client, prefix = shared_redis
    made: list[LeasedSequencer] = []

    def make(node: str) -> LeasedSequencer:
        made.append(LeasedSequencer(client, node_id=node, prefix=prefix))
        return made[-1]

    yield make
    for sequencer in made:
        await sequencer.close()


@pytest.fixture(params=["local", "leased"])
async def sequencer(request: pytest.FixtureRequest) -> AsyncIterator[Sequencer]:
    made: Sequencer
    if request.param == "local":
        made = LocalSequencer("node-a")
        yield made
        await made.close()
        return
    async with redis_with_prefix() as (client, prefix):
        made = LeasedSequencer(client, node_id="node-a", prefix=prefix)
        yield made
        await made.close()


async def appended(sequencer: Sequencer, key: CanvasKey, count: int, first: int = 1) -> None:
    for seq in range(first, first + count):
        reply = await sequencer.append(key, seq - 1, patch(seq))
        assert (reply.outcome, reply.seq) == ("OK", seq)


# -- every backend -------------------------------------------------------------


async def test_no_state_until_init_and_an_existing_state_wins(sequencer: Sequencer) -> None:
    assert await sequencer.state(KEY) is None
    assert (await sequencer.append(KEY, 0, patch(1))).outcome == "NOSTATE"
    assert await sequencer.load(KEY, 1) == (None, [])
    assert await sequencer.init(KEY, 7, EPOCH)
    assert not await sequencer.init(KEY, 0, "e2")  # a racing instance's state wins
    state = await sequencer.state(KEY)
    assert state is not None
    assert (state.seq, state.dseq, state.epoch) == (7, 7, EPOCH)
    assert await sequencer.state(OTHER) is None  # per canvas


async def test_seqs_are_assigned_gap_free_and_only_at_the_expected_seq(
    sequencer: Sequencer,
) -> None:
    assert await sequencer.init(KEY, 0, EPOCH)
    await appended(sequencer, KEY, 10)
    behind = await sequencer.append(KEY, 4, patch(5))
    assert (behind.outcome, behind.seq) == ("BEHIND", 10)
    ahead = await sequencer.append(KEY, 11, patch(12))
    assert (ahead.outcome, ahead.seq) == ("BEHIND", 10)
    state = await sequencer.state(KEY)
    assert state is not None
    assert (state.seq, state.dseq, state.holder) == (10, 0, sequencer.node_id)


async def test_concurrent_appends_through_one_instance_get_each_seq_once(
    sequencer: Sequencer,
) -> None:
    assert await sequencer.init(KEY, 0, EPOCH)
    got: list[int] = []

    async def writer() -> None:
        for _ in range(15):
            while True:
                state = await sequencer.state(KEY)
                assert state is not None
                reply = await sequencer.append(KEY, state.seq, patch(state.seq + 1))
                if reply.outcome == "OK":
                    got.append(reply.seq)
                    break
                assert reply.outcome == "BEHIND"

    await asyncio.gather(*(writer() for _ in range(4)))
    assert sorted(got) == list(range(1, 61))
    state = await sequencer.state(KEY)
    assert state is not None and state.seq == 60


async def test_another_epoch_changes_nothing(sequencer: Sequencer) -> None:
    assert await sequencer.init(KEY, 3, EPOCH)
    assert (await sequencer.append(KEY, 3, patch(4, "e2"))).outcome == "EPOCH"
    await appended(sequencer, KEY, 2, first=4)
    assert await sequencer.advance([(KEY, [patch(5, "e2")])]) == [OTHER_EPOCH]
    assert not await sequencer.drop(KEY, "e2", NO_BOUND)
    state = await sequencer.state(KEY)
    assert state is not None
    assert (state.seq, state.dseq, state.epoch) == (5, 3, EPOCH)


async def test_the_durable_seq_only_advances_and_never_past_the_seq(
    sequencer: Sequencer,
) -> None:
    assert await sequencer.init(KEY, 0, EPOCH)
    assert await sequencer.init(OTHER, 0, EPOCH)
    await appended(sequencer, KEY, 5)
    await appended(sequencer, OTHER, 1)
    # Per canvas, the patches each advance passed.
    assert await sequencer.advance([(KEY, run(1, 3)), (OTHER, run(1, 1))]) == [3, 1]
    assert await sequencer.advance([(KEY, run(1, 2))]) == [0]  # not back
    assert await sequencer.advance([(KEY, run(1, 3))]) == [0]
    assert await sequencer.advance([(KEY, run(4, 7))]) == [GAP]  # 6 and 7 never assigned
    state = await sequencer.state(KEY)
    assert state is not None and (state.seq, state.dseq) == (5, 3)
    assert await sequencer.advance([(KEY, run(4, 5))]) == [2]
    state = await sequencer.state(KEY)
    assert state is not None and (state.seq, state.dseq) == (5, 5)


async def test_the_holders_silence_counts_from_its_last_progress(sequencer: Sequencer) -> None:
    assert await sequencer.init(KEY, 0, EPOCH)
    await appended(sequencer, KEY, 2)
    started = time.monotonic()
    await asyncio.sleep(0.1)
    state = await sequencer.state(KEY)
    assert state is not None and state.holder == sequencer.node_id
    if sequencer.shared:
        # A leased holder is silent only once its key is gone (another hub sees that:
        # tests/test_canvas_redis.py); to itself it is never silent.
        assert state.idle_ms == 0
        return
    assert 90 <= state.idle_ms
    assert await sequencer.advance([(KEY, run(1, 1))]) == [1]  # progress
    state = await sequencer.state(KEY)
    assert state is not None
    assert state.idle_ms <= (time.monotonic() - started) * 1000 - 90


async def test_drop_removes_the_state_only_in_its_epoch_below_the_bound(
    sequencer: Sequencer,
) -> None:
    assert await sequencer.init(KEY, 0, EPOCH)
    await appended(sequencer, KEY, 4)
    assert await sequencer.advance([(KEY, run(1, 2))]) == [2]
    assert not await sequencer.drop(KEY, EPOCH, 2)  # dseq 2 is not below 2
    assert not await sequencer.drop(KEY, "e2", NO_BOUND)
    assert await sequencer.state(KEY) is not None
    assert await sequencer.drop(KEY, EPOCH, 3)
    assert await sequencer.state(KEY) is None
    assert (await sequencer.append(KEY, 4, patch(5))).outcome == "NOSTATE"
    # Set up again in a new epoch: the old epoch's patches are refused.
    assert await sequencer.init(KEY, 2, "e2")
    assert (await sequencer.append(KEY, 2, patch(3))).outcome == "EPOCH"
    assert (await sequencer.append(KEY, 2, patch(3, "e2"))).outcome == "OK"


async def test_new_epochs(sequencer: Sequencer) -> None:
    # Nothing stored: the epoch fixed by the key, so it survives reloads.
    assert sequencer.new_epoch(KEY, None) == initial_epoch(KEY)
    assert sequencer.new_epoch(OTHER, None) != initial_epoch(KEY)
    if sequencer.shared:
        # Clients may hold positions in a log Redis lost: they must resync.
        epochs = {sequencer.new_epoch(KEY, EPOCH) for _ in range(3)}
        assert EPOCH not in epochs and len(epochs) == 3
    else:
        assert sequencer.new_epoch(KEY, EPOCH) == EPOCH


async def test_entries_are_the_assigned_patches_from_some_seq_on(sequencer: Sequencer) -> None:
    assert await sequencer.init(KEY, 0, EPOCH)
    await appended(sequencer, KEY, 6)
    got = await sequencer.entries(KEY, 2, 5)
    seqs = [e.patch.seq for e in got]
    assert seqs == list(range(6 - len(got), 6))  # a gap-free run up to the last asked
    for entry in got:
        assert same(entry.patch) == same(patch(entry.patch.seq))
        assert entry.ops == [
            {"op": "add", "path": f"/elements/{entry.patch.seq}", "value": {"type": "stroke"}}
        ]
    state, loaded = await sequencer.load(KEY, 3)
    assert state is not None and (state.seq, state.dseq, state.epoch) == (6, 0, EPOCH)
    loaded_seqs = [e.patch.seq for e in loaded]
    assert loaded_seqs == list(range(7 - len(loaded), 7))  # a gap-free run to the newest


# -- shared sequencers: two hubs on one Redis -----------------------------------


async def test_a_canvas_another_hub_holds_is_busy_until_it_lets_it_go(
    redis_sequencers: Make,
) -> None:
    a, b = redis_sequencers("node-a"), redis_sequencers("node-b")
    assert await a.init(KEY, 0, EPOCH)
    assert not await b.init(KEY, 0, "e2")
    await appended(a, KEY, 2)
    assert (await b.append(KEY, 2, patch(3))).outcome == "BUSY"  # and b asks a for it
    state = await b.state(KEY)
    assert state is not None and (state.holder, state.current) == ("node-a", False)
    assert await a.advance([(KEY, run(1, 2))]) == [2]

    async def b_took_it() -> bool:
        return (await b.append(KEY, 2, patch(3))).outcome == "OK"

    # Asked, a lets go once its patches are durable; b takes the canvas at a's last seq.
    await eventually(b_took_it, what="b takes the canvas")
    assert a.holds(KEY) is None and b.holds(KEY) == (3, 2)
    state = await a.state(KEY)
    assert state is not None
    assert (state.seq, state.dseq, state.holder, state.current) == (3, 2, "node-b", False)


async def test_two_hubs_appending_at_once_get_gap_free_seqs(redis_sequencers: Make) -> None:
    hubs = [redis_sequencers("node-a"), redis_sequencers("node-b")]
    assert await hubs[0].init(KEY, 0, EPOCH)
    got: dict[str, list[int]] = {h.node_id: [] for h in hubs}

    async def writer(hub: Sequencer) -> None:
        while len(got[hub.node_id]) < 20:
            state = await hub.state(KEY)
            assert state is not None
            reply = await hub.append(KEY, state.seq, patch(state.seq + 1, name=hub.node_id))
            if reply.outcome == "OK":
                got[hub.node_id].append(reply.seq)
                # Stored at once: durable, so the other hub may go on.
                assert await hub.advance([(KEY, [patch(reply.seq)])]) == [1]
            else:
                assert reply.outcome in ("BEHIND", "BUSY")
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(h) for h in hubs))
    assert sorted(got["node-a"] + got["node-b"]) == list(range(1, 41))
    for hub in hubs:
        hub.forget(KEY)  # the holder lets the canvas go: Redis's state is exact again

    async def exact() -> bool:
        state = await hubs[1].state(KEY)
        assert state is not None
        return (state.seq, state.dseq, state.holder) == (40, 40, "")

    await eventually(exact, what="the state at 40, held by none")


async def test_advancing_tells_the_other_hubs_once_in_seq_order(
    redis_sequencers: Make, shared_redis: tuple[redis.asyncio.Redis, str]
) -> None:
    client, _ = shared_redis
    a = redis_sequencers("node-a")
    # A session of its own: channels are not per database, and the tests running
    # beside this one (pytest -n) advance KEY too.
    key = CanvasKey("c1", f"session-{uuid.uuid4().hex[:12]}", "s1")
    pubsub = client.pubsub()
    await pubsub.subscribe(session_channel(key.center_id, key.session_id))
    try:
        assert await a.init(key, 0, EPOCH)
        await appended(a, key, 3)
        assert await a.advance([(key, run(1, 2))]) == [2]
        assert await a.advance([(key, run(1, 2))]) == [0]
        assert await a.advance([(key, run(3, 3))]) == [1]
        await a.publish(key, [patch(3)])  # what advance could not pass, directly
        frames: list[Any] = []
        deadline = time.monotonic() + 5
        while len(frames) < 3 and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                frames.append(unframe(message["data"]))
        got = []
        for sender, kind, payload in frames:
            assert (sender, kind) == ("node-a", CANVAS)
            framed, entries = wire.read_frame(payload)
            assert framed == key
            got.append([same(e.patch) for e in entries])
        assert got == [[same(patch(1)), same(patch(2))], [same(patch(3))], [same(patch(3))]]
    finally:
        await pubsub.aclose()


async def test_racing_inits_leave_one_state(redis_sequencers: Make) -> None:
    hubs = [redis_sequencers(f"node-{i}") for i in range(4)]
    won = await asyncio.gather(*(h.init(KEY, 5, f"epoch-{h.node_id}") for h in hubs))
    assert sorted(won) == [False, False, False, True]
    winner = hubs[won.index(True)]
    for hub in hubs:
        state = await hub.state(KEY)
        assert state is not None
        assert (state.seq, state.dseq, state.epoch) == (5, 5, f"epoch-{winner.node_id}")
