"""Lua scripts sent to Redis in one pipeline, one round trip for many calls.

A redis-py pipeline that holds scripts asks ``SCRIPT EXISTS`` before every
execution, which makes each pipeline two round trips. ``run_scripts`` sends
the calls as plain ``EVALSHA`` and loads a script only when Redis answers
``NOSCRIPT`` (it restarted or was flushed), then runs again just those
calls, which did nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Call = tuple[AsyncScript, Sequence[Any], Sequence[Any]]  # script, keys, args


async def run_scripts(client: redis.asyncio.Redis, calls: Sequence[Call]) -> list[Any]:
    """Each call's reply, or the error Redis answered it with, in order.

    A lost connection raises: then any of the calls may or may not have run.
    """
    replies = await _pipelined(client, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for script in {calls[i][0] for i in missing}:
            script.sha = await client.script_load(script.script)
        again = await _pipelined(client, [calls[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


async def _pipelined(client: redis.asyncio.Redis, calls: Sequence[Call]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
