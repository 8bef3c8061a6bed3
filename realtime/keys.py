"""Typed keys for the state the aiohttp app shares with its handlers."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from canvas.service import CanvasService
from realtime.base.config import Settings
from realtime.base.identity import TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.sockets import LiveHub
from rooms.help import HelpDesk
from rooms.timers import Timers

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
DB = web.AppKey("db", async_sessionmaker[AsyncSession])
VERIFIER = web.AppKey("verifier", TokenVerifier)
METRICS = web.AppKey("metrics", HubMetrics)
HUB = web.AppKey("hub", LiveHub)
CANVASES = web.AppKey("canvases", CanvasService)
HELP = web.AppKey("help", HelpDesk)
TIMERS = web.AppKey("timers", Timers)
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
