"""Presence shared by every hub through Redis.

Per student, a hash of their joined connections (connection id -> hub); per
hub, the set of its connections. Each change is one Lua script, so a
student's tabs on different hubs count as one presence and only the real
transitions are reported, once.

A student whose last connection left is *leaving*: a member of one sorted
set, scored by the wall-clock end of their grace period, that a joining
connection takes back (RESUMED) and that any hub's sweep claims once it is
due (``departures``), whichever hub the student was on.

A hub that dies keeps no promise: every hub refreshes a heartbeat key, and a
sweep that finds a hub's heartbeat gone takes that hub's connections out as
if each had disconnected at that moment, so its students go through the
same grace period and then offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import orjson
from redis.exceptions import RedisError

from presence.activity import StudentKey
from presence.tracker import Arrival, Departure
from realtime.base.tasks import stop
from realtime.bus.subscription_redis import AnyRedis

log = logging.getLogger(__name__)

PREFIX = "hub:presence:"
# On Redis Cluster every presence key carries one hash tag: the scripts touch a
# student's keys, the hub's and the shared leaving set at once, which must be in one
# slot. (Connects and departures are rare next to patches: one shard holds them.)
CLUSTER_PREFIX = "hub:presence:{presence}:"
HEARTBEAT_S = 1.0
# A hub whose heartbeat is this old is dead: its connections are taken out.
DEAD_AFTER_S = 5.0
CLAIM_LIMIT = 500
# Last told statuses outlive a session by this much at most (refreshed on each change).
STATUS_TTL_S = 24 * 3600

# KEYS: student's connections, leaving set, student's leaving mark, hub's connections
# ARGV: connection id, hub id, hub-set entry
_CONNECT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 'already' end
redis.call('SADD', KEYS[4], ARGV[3])
if redis.call('HLEN', KEYS[1]) > 1 then return 'already' end
local leaving = redis.call('GET', KEYS[3])
if leaving then
  redis.call('DEL', KEYS[3])
  if redis.call('ZREM', KEYS[2], leaving) == 1 then return 'resumed' end
end
return 'online'
"""

# KEYS: as _CONNECT. ARGV: connection id, hub-set entry, departure, deadline, grace (0/1)
_DISCONNECT = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[4], ARGV[2])
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  redis.call('SET', KEYS[3], ARGV[3])
end
return 1
"""

# KEYS: leaving set. ARGV: now, limit, mark key prefix
_DEPARTURES = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, departure in ipairs(due) do
  redis.call('ZREM', KEYS[1], departure)
  local student = cjson.decode(departure)
  local mark = ARGV[3] .. student[1] .. '\\0' .. student[2] .. '\\0' .. student[3]
  if redis.call('GET', mark) == departure then redis.call('DEL', mark) end
end
return due
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _student(key: StudentKey) -> str:
    return "\0".join(key)


class RedisPresenceTracker:
    """``presence.tracker.PresenceTracker`` shared through Redis."""

    def __init__(self, redis: AnyRedis, node_id: str, prefix: str = PREFIX) -> None:
        self._redis = redis
        self.node_id = node_id
        self._prefix = prefix
        self._leaving_key = prefix + "leaving"
        self._nodes_key = prefix + "nodes"
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._departures = redis.register_script(_DEPARTURES)
        self._heartbeat: asyncio.Task[None] | None = None

    def _keys(self, key: StudentKey, node_id: str) -> list[str]:
        student = _student(key)
        return [
            self._prefix + "conns:" + student,
            self._leaving_key,
            self._prefix + "mark:" + student,
            self._prefix + "node:" + node_id + ":conns",
        ]

    async def connect(self, key: StudentKey, connection_id: str) -> Arrival:
        entry = orjson.dumps([*key, connection_id]).decode()
        arrival = await self._connect(
            keys=self._keys(key, self.node_id), args=[connection_id, self.node_id, entry]
        )
        return Arrival(arrival.decode() if isinstance(arrival, bytes) else arrival)

    async def disconnect(
        self, key: StudentKey, connection_id: str, left_at: datetime, grace_s: float
    ) -> bool:
        return await self._leave(
            self.node_id, key, connection_id, left_at, grace_s, leaving=grace_s > 0
        )

    async def _leave(
        self,
        node_id: str,
        key: StudentKey,
        connection_id: str,
        left_at: datetime,
        grace_s: float,
        *,
        leaving: bool,
    ) -> bool:
        """Take a connection out; ``leaving``: a student whose last one it was is leaving
        until ``grace_s`` from now (else the caller marks them offline)."""
        entry = orjson.dumps([*key, connection_id]).decode()
        departure = orjson.dumps([*key, left_at.isoformat(), connection_id]).decode()
        went = await self._disconnect(
            keys=self._keys(key, node_id),
            args=[connection_id, entry, departure, time.time() + grace_s, int(leaving)],
        )
        return bool(went)

    async def departures(self, everyone: bool = False) -> list[Departure]:
        until = "+inf" if everyone else repr(time.time())
        claimed: list[bytes | str] = []
        while True:
            # At most CLAIM_LIMIT a script; ``everyone`` is all of them, however many.
            batch = await self._departures(
                keys=[self._leaving_key], args=[until, CLAIM_LIMIT, self._prefix + "mark:"]
            )
            claimed.extend(batch)
            if not everyone or len(batch) < CLAIM_LIMIT:
                break
        departures = []
        for raw in claimed:
            center_id, session_id, student_id, left_at, _ = orjson.loads(raw)
            departures.append(
                Departure((center_id, session_id, student_id), datetime.fromisoformat(left_at))
            )
        return departures

    async def record(self, key: StudentKey, status: str) -> None:
        center_id, session_id, student_id = key
        statuses = self._statuses_key(center_id, session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(statuses, student_id, status)
            pipe.expire(statuses, STATUS_TTL_S)
            await pipe.execute()

    async def recorded(self, center_id: str, session_id: str) -> dict[str, str]:
        found = await self._redis.hgetall(self._statuses_key(center_id, session_id))
        return {_text(k): _text(v) for k, v in found.items()}

    def _statuses_key(self, center_id: str, session_id: str) -> str:
        return self._prefix + "status:" + center_id + "\0" + session_id

    async def reap(self, now: datetime, grace_s: float) -> int:
        """Take out the connections of hubs whose heartbeat is gone (they died); how
        many. Their students are then leaving, as if they had just disconnected (with no
        grace period, due at once: ``departures`` hands them out)."""
        reaped = 0
        for raw in await self._redis.smembers(self._nodes_key):
            node_id = _text(raw)
            if node_id == self.node_id or await self._redis.exists(self._alive_key(node_id)):
                continue
            # One hub reaps a dead one: whoever sets the claim first.
            if not await self._redis.set(self._reaping_key(node_id), self.node_id, nx=True, ex=60):
                continue
            conns_key = self._prefix + "node:" + node_id + ":conns"
            for entry in await self._redis.smembers(conns_key):
                center_id, session_id, student_id, connection_id = orjson.loads(entry)
                key = (center_id, session_id, student_id)
                # Leaving even with no grace period (due at once): the departures
                # of the same sweep hand them out, as nobody else will.
                await self._leave(node_id, key, connection_id, now, grace_s, leaving=True)
                reaped += 1
            await self._redis.delete(conns_key)
            await self._redis.srem(self._nodes_key, node_id)
            log.warning("hub %s is gone: took out its %d connections", node_id, reaped)
        return reaped

    def _alive_key(self, node_id: str) -> str:
        return self._prefix + "node:" + node_id + ":alive"

    def _reaping_key(self, node_id: str) -> str:
        return self._prefix + "node:" + node_id + ":reaping"

    async def start(self) -> None:
        # A hub starts with Redis away (/readyz says so) and beats once it is back.
        try:
            await self._beat()
        except (RedisError, OSError) as exc:
            log.warning("presence heartbeat failed: %r", exc)
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="presence-heartbeat")

    async def _beat(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._alive_key(self.node_id), 1, px=int(DEAD_AFTER_S * 1000))
            pipe.sadd(self._nodes_key, self.node_id)
            await pipe.execute()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                log.warning("presence heartbeat failed: %r", exc)

    async def close(self) -> None:
        """Stop beating. The hub's connections were taken out as each disconnected;
        a hub that is killed instead is reaped by the others."""
        if self._heartbeat is not None:
            await stop([self._heartbeat])
        try:
            # Out of the hubs first when nothing is left to reap: a sweep between the
            # two steps took a stopped hub for a dead one ("is gone", 0 connections).
            if not await self._redis.scard(self._prefix + "node:" + self.node_id + ":conns"):
                await self._redis.srem(self._nodes_key, self.node_id)
            await self._redis.delete(self._alive_key(self.node_id))
        except (RedisError, OSError):
            pass
