"""Typed keys for the state the aiohttp app shares with its handlers.

The assembly (``realtime.app``) sets them; REST handlers and the app's own
start and stop hooks read them. REST sits above the features it calls.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from canvas.service import CanvasService
from presence.live import LivePresence
from realtime.base.config import Settings
from realtime.base.identity import TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.bus.bus import Bus
from realtime.bus.subscription_redis import AnyRedis
from realtime.gateway.gateway import Gateway
from rooms.course_announcements import CourseAnnouncements
from rooms.help import HelpDesk
from rooms.sessions import SessionRooms
from rooms.timers import Timers

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine")
DB: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db")
VERIFIER: web.AppKey[TokenVerifier] = web.AppKey("verifier")
METRICS: web.AppKey[HubMetrics] = web.AppKey("metrics")
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
BUS: web.AppKey[Bus] = web.AppKey("bus")
SESSIONS: web.AppKey[SessionRooms] = web.AppKey("sessions")
PRESENCE: web.AppKey[LivePresence] = web.AppKey("presence")
CANVASES: web.AppKey[CanvasService] = web.AppKey("canvases")
HELP: web.AppKey[HelpDesk] = web.AppKey("help")
TIMERS: web.AppKey[Timers] = web.AppKey("timers")
REDIS: web.AppKey[AnyRedis | None] = web.AppKey("redis")
# Set when the hub starts stopping (SIGTERM): it is no longer ready.
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping")
COURSE_ANNOUNCEMENTS: web.AppKey[CourseAnnouncements] = web.AppKey("course_announcements")
