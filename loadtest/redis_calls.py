"""What one Lua script call to Redis costs the caller's CPU, by client path.

``python -m loadtest.redis_calls [--redis-url URL] [--calls N]`` runs the same
one-line script N times, one call at a time, on uvloop, through:

- redis-py's ``Script.__call__`` (what the hub used per canvas patch before
  ``canvas.pipelined``);
- redis-py's ``Connection`` (``send_packed_command`` + ``read_response``);
- ``canvas.pipelined.ScriptConnection`` (the hub's hot path now);

and prints the process's CPU microseconds per call for each, twice (the
first round warms up). Loopback only; it writes one key, ``loadtest:calls``,
in the given database and deletes it.
"""

from __future__ import annotations

import argparse
import resource
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import redis.asyncio
import uvloop

from canvas.pipelined import ScriptConnection
from loadtest.fanout import DEFAULT_REDIS_URL, check_redis_url

SCRIPT = "return redis.call('INCR', KEYS[1])"
KEY = "loadtest:calls"
MAX_CALLS = 100_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_call_us(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    """This process's CPU microseconds per ``call()``, awaited ``calls`` times in turn."""
    start = cpu_s()
    for _ in range(calls):
        await call()
    return (cpu_s() - start) * 1e6 / calls


async def measure(url: str, calls: int) -> list[dict[str, float]]:
    client = redis.asyncio.Redis.from_url(url)
    script = client.register_script(SCRIPT)
    fast = ScriptConnection(client)
    connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    packed = connection.pack_command("EVALSHA", script.sha, 1, KEY)

    async def by_connection() -> object:
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()

    rounds = []
    try:
        await script(keys=[KEY])  # loaded, so every path finds it
        for _ in range(2):
            rounds.append(
                {
                    "redis-py Script": await per_call_us(calls, lambda: script(keys=[KEY])),
                    "redis-py Connection": await per_call_us(calls, by_connection),
                    "ScriptConnection": await per_call_us(
                        calls, lambda: fast.run(script, [KEY], [])
                    ),
                }
            )
    finally:
        await client.connection_pool.release(connection)
        await fast.close()
        await client.delete(KEY)
        await client.aclose()
    return rounds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.redis_calls")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)
    if not 0 < args.calls <= MAX_CALLS:
        parser.error(f"--calls must be in [1, {MAX_CALLS}]")
    try:
        check_redis_url(args.redis_url)
    except ValueError as exc:
        parser.error(str(exc))
    if urlsplit(args.redis_url).hostname not in LOOPBACK:
        parser.error(f"expected Redis on loopback ({', '.join(LOOPBACK)}), got {args.redis_url}")
    for n, figures in enumerate(uvloop.run(measure(args.redis_url, args.calls)), start=1):
        line = ", ".join(f"{name} {us:.0f} us" for name, us in figures.items())
        print(f"round {n}: CPU per call: {line}")


if __name__ == "__main__":
    main()
