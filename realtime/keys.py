"""Typed keys for the state the aiohttp app shares with its handlers.

The services' classes are named for the type checker only: a module that reads
a key (every REST module) does not import the gateway and the features with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from canvas.service import CanvasService
    from realtime.base.config import Settings
    from realtime.base.identity import TokenVerifier
    from realtime.base.metrics import HubMetrics
    from realtime.sockets import LiveHub
    from rooms.help import HelpDesk
    from rooms.timers import Timers

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine")
DB: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db")
VERIFIER: web.AppKey[TokenVerifier] = web.AppKey("verifier")
METRICS: web.AppKey[HubMetrics] = web.AppKey("metrics")
HUB: web.AppKey[LiveHub] = web.AppKey("hub")
CANVASES: web.AppKey[CanvasService] = web.AppKey("canvases")
HELP: web.AppKey[HelpDesk] = web.AppKey("help")
TIMERS: web.AppKey[Timers] = web.AppKey("timers")
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
