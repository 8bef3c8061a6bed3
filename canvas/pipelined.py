"""Lua scripts and commands on the canvas hot path: over a connection of their own,
pipelined.

A hub taking or letting go of a canvas runs a script, and each commit
publishes its durable patches, one ``PUBLISH`` per canvas
(``canvas.sequencer_leased``). Through redis-py a call costs about 180 us
of the hub's CPU, three times the round trip itself: connection pool, retry
and timeout wrappers, and its parser (``loadtest/`` fan-out profile, in
``docs/benchmarks.md``, measured when every patch was a script call).
``ScriptConnection`` writes each call at once, without waiting for earlier
replies, on one connection, and matches the replies in order; hiredis (the
Redis project's C parser) reads them and packs the commands. It raises
redis-py's errors, so callers handle one set.

A script Redis no longer knows (``NOSCRIPT``: it restarted or was flushed) is
loaded and run again, just those calls, which did nothing the first time.
TLS connections go through redis-py, which holds their settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.bus.subscription_redis import AnyRedis
from realtime.internals.redis_connection import (
    connection_options,
    is_plain,
    script_sha,
    script_source,
    set_script_sha,
)

Call = tuple[AsyncScript, Sequence[Any], Sequence[Any]]  # script, keys, args
# A reply Redis did not give within this long: the connection is dropped.
DEFAULT_TIMEOUT_S = 5.0


class _Replies(asyncio.Protocol):
    """The connection: replies in order to the calls waiting for them."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.drop(RedisConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            future = self.waiting.popleft()
            if future.done():  # its caller gave up
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc!r}"))

    def send(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self.waiting.extend(futures)
        self.transport.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        return futures

    def drop(self, error: Exception) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class ScriptConnection:
    """Script calls to the Redis of ``client``, on one pipelined connection."""

    def __init__(self, client: AnyRedis, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._client = client
        self._timeout_s = timeout_s
        # TLS settings live in redis-py, and a cluster's calls go to the node of their
        # keys' slot: those go through redis-py's (cluster) pipelines.
        self._direct = False
        self._options: dict[str, Any] = {}
        if isinstance(client, redis.asyncio.Redis) and is_plain(client):
            self._direct, self._options = True, connection_options(client)
        self._replies: _Replies | None = None
        self._connecting = asyncio.Lock()

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply; raises what Redis answered, or the lost connection."""
        [reply] = await self.run_many([(script, keys, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's reply, or the error Redis answered it with, in order.

        A lost connection raises: then any of the calls may or may not have run.
        """
        replies = await self._evalsha(calls)
        missing = [i for i, reply in enumerate(replies) if _no_script(reply)]
        if missing:
            await self._load([calls[i][0] for i in missing])
            again = await self._evalsha([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def commands(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Each command's reply, or the error Redis answered it with, in order, sent
        after the calls and commands before them (one connection)."""
        if not self._direct:
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=False))
        return await self._send(await self._connected(), commands)

    async def _load(self, scripts: Sequence[AsyncScript]) -> None:
        unique = list({id(s): s for s in scripts}.values())
        if not self._direct:
            for script in unique:
                set_script_sha(script, await self._client.script_load(script_source(script)))
            return
        loaded = await self._send(
            await self._connected(), [("SCRIPT", "LOAD", script_source(s)) for s in unique]
        )
        for script, sha in zip(unique, loaded, strict=True):
            if isinstance(sha, Exception):
                raise sha
            set_script_sha(script, sha.decode())

    async def close(self) -> None:
        if self._replies is not None and self._replies.transport is not None:
            self._replies.transport.close()
        self._replies = None

    async def _evalsha(self, calls: Sequence[Call]) -> list[Any]:
        if not self._direct:
            async with self._client.pipeline(transaction=False) as pipe:
                for script, keys, args in calls:
                    pipe.evalsha(script_sha(script), len(keys), *keys, *args)
                return list(await pipe.execute(raise_on_error=False))
        commands = [("EVALSHA", script_sha(s), len(keys), *keys, *args) for s, keys, args in calls]
        return await self._send(await self._connected(), commands)

    async def _send(self, replies: _Replies, commands: Sequence[Sequence[Any]]) -> list[Any]:
        futures = replies.send(commands)
        try:
            async with asyncio.timeout(self._timeout_s):
                for future in futures:
                    if not future.done():
                        with contextlib.suppress(Exception):  # its error is read below
                            await future
        except TimeoutError:
            replies.drop(RedisTimeoutError("Redis did not answer in time"))
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout_s} s") from None
        out = []
        for future in futures:
            error = future.exception()
            if isinstance(error, RedisConnectionError | RedisTimeoutError):
                raise error
            out.append(error if error is not None else future.result())
        return out

    async def _connected(self) -> _Replies:
        replies = self._replies
        if replies is not None and not replies.lost:
            return replies
        async with self._connecting:
            if self._replies is not None and not self._replies.lost:
                return self._replies
            self._replies = await self._connect()
            return self._replies

    async def _connect(self) -> _Replies:
        options = self._options
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(options.get("socket_connect_timeout") or self._timeout_s):
                if "path" in options:
                    _, replies = await loop.create_unix_connection(_Replies, options["path"])
                else:
                    _, replies = await loop.create_connection(
                        _Replies, options.get("host", "localhost"), options.get("port", 6379)
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"connecting to Redis failed: {exc!r}") from None
        setup: list[tuple[Any, ...]] = []
        password, username = options.get("password"), options.get("username")
        if password is not None:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        if setup:
            for reply in await self._send(replies, setup):
                if isinstance(reply, Exception):
                    replies.drop(RedisConnectionError("closing"))
                    raise reply
        return replies


def _no_script(reply: Any) -> bool:
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")
    )
