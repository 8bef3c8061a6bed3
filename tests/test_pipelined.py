"""The canvas hot path's own Redis connection (``canvas.pipelined``), against real
Redis servers: replies match their calls, errors stay with their call, and the
connection logs in, picks its database and comes back after Redis does."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from canvas.pipelined import ScriptConnection
from realtime.bus.bus_redis import redis_client
from tests.conftest import REDIS_URL, need_service, redis_problem
from tests.processes import RedisServer

ECHO = "return {ARGV[1], redis.call('INCR', KEYS[1])}"
FAILS = "return redis.error_reply('ERR refused ' .. ARGV[1])"


Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    """Each test on both loops: the hub serves on uvloop, whose transports are not
    asyncio's classes."""
    return LOOPS[request.param]


@pytest.fixture
def redis_up() -> None:
    need_service("Redis", asyncio.run(redis_problem()))


@asynccontextmanager
async def shared_redis() -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield connection
    finally:
        await connection.delete("test:pipelined:n")
        await connection.aclose()


@pytest.fixture
def redis_server_binary() -> None:
    if shutil.which("redis-server") is None:
        need_service("redis-server", "not on PATH", hint="install redis-server")


def test_concurrent_calls_each_get_their_own_reply_in_order(redis_up: None, run: Runner) -> None:
    run(concurrent_calls())


async def concurrent_calls() -> None:
    async with shared_redis() as client:
        scripts = ScriptConnection(client)
        echo = client.register_script(ECHO)
        try:
            replies = await asyncio.gather(
                *(scripts.run(echo, ["test:pipelined:n"], [f"call-{i}"]) for i in range(300))
            )
            assert [r[0] for r in replies] == [f"call-{i}".encode() for i in range(300)]
            assert sorted(r[1] for r in replies) == list(range(1, 301))  # each ran once
            # On the test database (db in the URL), where redis-py sees the same key.
            assert int(await client.get("test:pipelined:n")) == 300
        finally:
            await scripts.close()


def test_an_error_reply_stays_with_its_call(redis_up: None, run: Runner) -> None:
    run(error_replies())


async def error_replies() -> None:
    async with shared_redis() as client:
        scripts = ScriptConnection(client)
        echo, fails = client.register_script(ECHO), client.register_script(FAILS)
        try:
            replies = await scripts.run_many(
                [
                    (echo, ["test:pipelined:n"], ["a"]),
                    (fails, [], ["b"]),
                    (echo, ["test:pipelined:n"], ["c"]),
                ]
            )
            assert replies[0] == [b"a", 1] and replies[2] == [b"c", 2]
            assert isinstance(replies[1], ResponseError) and "refused b" in str(replies[1])
            with pytest.raises(ResponseError, match="refused d"):
                await scripts.run(fails, [], ["d"])
            assert await scripts.run(echo, ["test:pipelined:n"], ["e"]) == [b"e", 3]
        finally:
            await scripts.close()


def test_scripts_redis_forgot_are_loaded_and_run_once(
    redis_server_binary: None, tmp_path: Path, run: Runner
) -> None:
    run(forgotten_scripts(tmp_path))


async def forgotten_scripts(tmp_path: Path) -> None:
    # A server of its own: scripts are the whole server's, and flushing them under
    # other tests' feet failed their scripts (NoScriptError between load and run).
    server = RedisServer(tmp_path)
    await server.start()
    client = redis.asyncio.Redis.from_url(server.url)
    scripts = ScriptConnection(client)
    echo = client.register_script(ECHO)
    try:
        assert await scripts.run(echo, ["test:pipelined:n"], ["a"]) == [b"a", 1]
        await client.script_flush()
        assert await scripts.run(echo, ["test:pipelined:n"], ["b"]) == [b"b", 2]
    finally:
        await scripts.close()
        await client.aclose()
        server.stop()


def test_it_logs_in_and_comes_back_after_a_redis_restart(
    redis_server_binary: None, tmp_path: Path, run: Runner
) -> None:
    run(restarted(tmp_path))


async def restarted(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret")
    await server.start()
    client = redis.asyncio.Redis.from_url(server.url)
    scripts = ScriptConnection(client, timeout_s=2)
    echo = client.register_script(ECHO)
    try:
        assert await scripts.run(echo, ["n"], ["a"]) == [b"a", 1]
        server.stop()
        with pytest.raises(RedisConnectionError):
            await scripts.run(echo, ["n"], ["b"])
        await server.start()  # empty: it kept nothing, scripts included
        assert await scripts.run(echo, ["n"], ["c"]) == [b"c", 1]

        wrong = redis.asyncio.Redis.from_url(server.url.replace("s3cret", "wrong"))
        with pytest.raises(ResponseError):
            await ScriptConnection(wrong).run(echo, ["n"], ["d"])
        await wrong.aclose()
    finally:
        await scripts.close()
        await client.aclose()
        server.stop()


def test_the_hubs_client_sends_again_on_a_connection_redis_dropped(
    redis_server_binary: None, tmp_path: Path, run: Runner
) -> None:
    """After a Redis restart every pooled connection is dead: the hub's client
    (``realtime.bus.bus_redis.redis_client``) sends the command again on a new one."""
    run(pooled_connections_after_a_restart(tmp_path))


async def pooled_connections_after_a_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    await server.start()
    client = redis_client(server.url, socket_connect_timeout=2, socket_timeout=2)
    echo = client.register_script(ECHO)
    try:
        assert await echo(keys=["n"], args=["a"]) == [b"a", 1]
        for step in ("a script", "a script in a transaction", "a publish"):
            server.stop()
            await server.start()
            if step == "a script":
                assert await echo(keys=["n"], args=["b"]) == [b"b", 1]
            elif step == "a script in a transaction":
                async with client.pipeline(transaction=True) as pipe:
                    await echo(keys=["n"], args=["c"], client=pipe)
                    pipe.get("n")
                    assert await pipe.execute() == [[b"c", 1], b"1"]
            else:
                assert await client.publish("channel", b"frame") == 0
    finally:
        await client.aclose()
        server.stop()
