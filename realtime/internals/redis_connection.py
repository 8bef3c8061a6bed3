"""What the canvas scripts' pipelined connection and the bus's subscriber read from redis-py.

``canvas.pipelined.ScriptConnection`` opens a connection of its own to the
Redis a ``redis.asyncio.Redis`` client points at, so it needs that client's
connection settings, which redis-py keeps in ``ConnectionPool.connection_kwargs``
and ``connection_class`` (undocumented attributes), and each script's
``sha`` and ``script`` (attributes of redis-py's ``AsyncScript``), which it
updates after loading a script Redis had forgotten.

The bus's subscriber (``realtime.bus.bus_redis``) needs a client like the hub's
but without its retries: redis-py's ``PubSub`` reads through the connection's
``Retry``, and on a dropped connection reconnects and subscribes again by
itself, so the bus would never learn that frames were missed meanwhile (its
reconnect hooks catch up from the streams). Both pinned by
``tests/test_internals.py``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
from redis.asyncio.connection import Connection, ConnectionPool, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript


def connection_options(client: redis.asyncio.Redis) -> dict[str, Any]:
    """The keyword arguments ``client``'s pool opens its connections with."""
    return dict(client.connection_pool.connection_kwargs)


def without_retries(client: redis.asyncio.Redis) -> redis.asyncio.Redis:
    """A client to the same Redis, with the same settings, whose commands fail at once
    when their connection drops (``client``'s own may retry them on a new one)."""
    options = {**connection_options(client), "retry": Retry(NoBackoff(), 0)}
    pool = ConnectionPool(connection_class=client.connection_pool.connection_class, **options)
    return redis.asyncio.Redis(connection_pool=pool)


def is_plain(client: redis.asyncio.Redis) -> bool:
    """Whether ``client`` connects over plain TCP or a Unix socket (not TLS, whose
    settings only redis-py knows how to apply)."""
    return client.connection_pool.connection_class in (Connection, UnixDomainSocketConnection)


def script_sha(script: AsyncScript) -> str:
    return str(script.sha)


def script_source(script: AsyncScript) -> Any:
    """The script's Lua source, as it was registered."""
    return script.script


def set_script_sha(script: AsyncScript, sha: str) -> None:
    """Record the SHA Redis gave ``script`` when it was loaded again."""
    script.sha = sha
