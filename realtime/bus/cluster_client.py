"""redis-py's Redis Cluster client, made to wait for a connection at its cap.

redis-py's cluster client caps each node at ``max_connections`` and answers a
command beyond it with ``MaxConnectionsError`` at once; it has no blocking pool
as the single-node client has (``BlockingConnectionPool``, see
``realtime.bus.bus_redis.redis_client``). A class of students joining one hub
together on a cluster got ``INTERNAL``: 79 of 3,600 joins in
``python -m loadtest connections`` (docs/benchmarks.md).

So the hub's commands and pipelines go through a gate of ``max_connections - 1``
at a time (the one left is for the shard subscription's connection to the same
node). Each holds at most one connection of a node, so no node is asked for more
than its cap. A command redis-py runs inside another (a multi-shard command's
per-shard parts) passes the gate its caller already holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster

# Set while a task runs a gated command: what it runs inside passes (no deadlock).
_INSIDE: ContextVar[bool] = ContextVar("inside_gated_command", default=False)


class GatedRedisCluster(RedisCluster):
    """``RedisCluster`` whose commands and pipelines wait for a connection at the cap."""

    def __init__(self, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self.gate = asyncio.Semaphore(max(1, max_connections - 1))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = super().execute_command
        return await _through(self.gate, lambda: run(*args, **kwargs))

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # which refuses it
        # redis-py's own pipeline() builds ClusterPipeline the same way; its stubs
        # declare an attribute it sets at run time abstract.
        return GatedPipeline(self, transaction)  # type: ignore[abstract]


class GatedPipeline(ClusterPipeline):
    """A cluster pipeline that runs through its client's gate."""

    def __init__(self, client: GatedRedisCluster, transaction: Any = None) -> None:
        super().__init__(client, transaction)
        self._gate = client.gate

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        run = super().execute
        return await _through(self._gate, lambda: run(raise_on_error, allow_redirections))


async def _through(gate: asyncio.Semaphore, run: Callable[[], Awaitable[Any]]) -> Any:
    """``run()`` once ``gate`` lets it through; at once if this task is inside a gated
    call already (its caller holds a place)."""
    if _INSIDE.get():
        return await run()
    async with gate:
        inside = _INSIDE.set(True)
        try:
            return await run()
        finally:
            _INSIDE.reset(inside)
