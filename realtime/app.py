"""Assembles one hub process: Socket.IO and REST on one aiohttp app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from canvas.build import build_store
from canvas.document import CanvasLimits
from canvas.relay import CanvasRelay
from canvas.service import CanvasService
from persistence import migrate
from persistence.batch import batch_writer
from persistence.db import create_engine, dispose, read_session_factory, session_factory
from persistence.models import HelpPriority, utcnow
from presence.tracker import PresenceTracker
from presence.tracker_memory import MemoryPresenceTracker
from presence.tracker_redis import RedisPresenceTracker
from realtime.base.codec import CODEC
from realtime.base.config import Settings
from realtime.base.identity import TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.base.ratelimit import KeyedBuckets
from realtime.base.tasks import stop
from realtime.bus.bus import CANVAS, Bus
from realtime.bus.bus_memory import Cluster
from realtime.bus.bus_redis import RedisCluster, redis_client
from realtime.internals import check_versions
from realtime.keys import (
    CANVASES,
    DB,
    ENGINE,
    HELP,
    HUB,
    METRICS,
    REDIS,
    SETTINGS,
    TIMERS,
    VERIFIER,
)
from realtime.server import HubServer
from realtime.sockets import LiveHub
from rest import attendance, day, enrollments, health, notes, sessions
from rest import canvases as canvas_routes
from rest import help as help_routes
from rest.http import error_middleware
from rooms.control import ControlCenter
from rooms.help import Clock, HelpDesk
from rooms.timers import Timers

log = logging.getLogger(__name__)


def build_app(
    settings: Settings,
    *,
    presence: PresenceTracker | None = None,
    clock: Clock = utcnow,
) -> web.Application:
    """The hub's aiohttp application.

    Backends come in through the arguments and default to the in-memory ones;
    ``clock`` is what time-dependent rules (help escalation) read, so tests
    can move time instead of sleeping.
    """
    for mismatch in check_versions(allow_untested=settings.allow_untested_libraries):
        log.warning("HUB_ALLOW_UNTESTED_LIBRARIES: starting with %s", mismatch)
    verifier = TokenVerifier(settings)
    metrics = HubMetrics()
    engine = create_engine(
        settings.database_url, echo=settings.database_echo, schema=settings.database_schema
    )
    db = session_factory(engine)
    reads = read_session_factory(engine)

    redis = redis_client(settings.redis_url) if settings.redis_url else None
    cluster = RedisCluster(redis, metrics) if redis is not None else Cluster()
    sio = HubServer(
        cluster=cluster,
        metrics=metrics,
        async_mode="aiohttp",
        cors_allowed_origins=_cors(settings.cors_origins),
        max_http_buffer_size=settings.max_message_bytes,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        logger=False,
        engineio_logger=False,
        json=CODEC,
    )
    outbox = sio.outbox
    hub = LiveHub(
        sio,
        db=db,
        reads=reads,
        verifier=verifier,
        presence=presence or _presence(redis, cluster),
        metrics=metrics,
        events_per_s=settings.socket_events_per_s,
        event_burst=settings.socket_event_burst,
        clock=clock,
        idle_after_s=settings.idle_after_s,
        late_after_s=settings.late_after_s,
        grace_s=settings.presence_grace_s,
    )

    relay = CanvasRelay(outbox, interval_s=settings.canvas_flush_interval_s, metrics=metrics)
    store_options: dict[str, Any] = dict(
        limits=CanvasLimits(
            max_ops_per_patch=settings.canvas_max_ops_per_patch,
            max_patch_bytes=settings.canvas_max_patch_bytes,
            max_canvas_bytes=settings.canvas_max_bytes,
            max_entries=settings.canvas_max_entries,
        ),
        retention=settings.canvas_log_retention,
        snapshot_every=settings.canvas_snapshot_every,
        snapshot_interval_s=settings.canvas_snapshot_interval_s,
        commit_linger_s=settings.canvas_commit_linger_s,
        metrics=metrics,
        on_durable=relay.durable,
    )
    store = build_store(
        reads, batch_writer(engine), **store_options, redis=redis, node_id=cluster.node_id
    )
    if redis is not None:
        # Seqs and the recent log shared by every hub; patches other hubs made durable
        # arrive on the session's channel.
        cluster.on(CANVAS, store.receive)
        cluster.on_reconnect(store.resume)
    canvases = CanvasService(hub, store, relay, keep_s=settings.presence_grace_s)
    ControlCenter(hub, db)
    help_desk = HelpDesk(
        hub,
        db,
        clock=clock,
        targets_s={
            HelpPriority.URGENT: settings.help_target_urgent_s,
            HelpPriority.HIGH: settings.help_target_high_s,
            HelpPriority.NORMAL: settings.help_target_normal_s,
            HelpPriority.LOW: settings.help_target_low_s,
        },
    )
    metrics.canvas_log_patches.set_function(store.logged_patches)

    timers = Timers(
        hub,
        db,
        help_desk,
        session_ending_warn_s=settings.session_ending_warn_s,
        idle_alert_s=settings.idle_alert_s,
    )

    app = web.Application(
        client_max_size=settings.max_request_bytes,
        middlewares=[
            error_middleware(
                metrics,
                verifier,
                KeyedBuckets(settings.rest_requests_per_s, settings.rest_request_burst),
            )
        ],
    )
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[DB] = db
    app[VERIFIER] = verifier
    app[METRICS] = metrics
    app[HUB] = hub
    app[CANVASES] = canvases
    app[HELP] = help_desk
    app[TIMERS] = timers
    # Lazy: the client connects on first use.
    app[REDIS] = redis
    sio.attach(app, socketio_path="socket.io")
    app.add_routes(health.routes)
    app.add_routes(sessions.routes)
    app.add_routes(enrollments.routes)
    app.add_routes(canvas_routes.routes)
    app.add_routes(help_routes.routes)
    app.add_routes(attendance.routes)
    app.add_routes(day.routes)
    app.add_routes(notes.routes)
    app.on_shutdown.append(_disconnect_clients)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_canvas_store)
    app.cleanup_ctx.append(_idle_watch)
    return app


def _presence(redis: Redis | None, cluster: Bus) -> PresenceTracker:
    if redis is None:
        return MemoryPresenceTracker()
    return RedisPresenceTracker(redis, cluster.node_id)


async def _disconnect_clients(app: web.Application) -> None:
    started = time.perf_counter()
    log.info("stopping: SIGTERM or shutdown")
    clients = len(app[HUB].members)
    await app[HUB].shutdown()
    log.info("stopping: %d clients told and disconnected in %.2f s", clients, _since(started))


def _cors(origins: list[str]) -> str | list[str] | None:
    # None: same origin only (engine.io's default); "*" must be passed bare.
    if not origins:
        return None
    return "*" if origins == ["*"] else origins


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    if app[SETTINGS].migrate_on_start:
        await migrate.upgrade(engine)
        log.info("database schema is at %s", await migrate.current_revision(engine))
    yield
    await dispose(engine)


async def _canvas_store(app: web.Application) -> AsyncIterator[None]:
    canvases = app[CANVASES]
    await canvases.store.start()
    yield
    started = time.perf_counter()
    await canvases.close()
    await canvases.store.close()
    await canvases.relay.close()
    log.info("stopping: canvases stored in %.2f s", _since(started))


def _since(started: float) -> float:
    return time.perf_counter() - started


async def _idle_watch(app: web.Application) -> AsyncIterator[None]:
    every_s = app[SETTINGS].presence_sweep_s
    tasks = [
        asyncio.create_task(app[HUB].watch_idle(every_s)),
        asyncio.create_task(app[TIMERS].watch(every_s)),
    ]
    yield
    await stop(tasks)


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """The cluster's publisher and subscriber run from start to stop (a lone hub has none)."""
    cluster = app[HUB].cluster
    await cluster.start()
    await app[HUB].presence.start()
    yield
    await app[HUB].presence.close()
    await cluster.close()
    client = app[REDIS]
    if client is not None:
        await client.aclose()
