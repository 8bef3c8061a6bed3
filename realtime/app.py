"""Assembles one hub process: Socket.IO and REST on one aiohttp app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from canvas.build import build_store
from canvas.document import CanvasLimits
from canvas.relay import CanvasRelay
from canvas.service import CanvasService
from persistence import migrate
from persistence.batch import batch_writer
from persistence.db import create_engine, dispose, read_session_factory, session_factory
from persistence.models import HelpPriority, utcnow
from presence.live import LivePresence
from presence.tracker import PresenceTracker
from presence.tracker_memory import MemoryPresenceTracker
from presence.tracker_redis import CLUSTER_PREFIX as PRESENCE_CLUSTER_PREFIX
from presence.tracker_redis import RedisPresenceTracker
from realtime.base.codec import CODEC
from realtime.base.config import Settings
from realtime.base.heap import heap_trimmer
from realtime.base.identity import TokenVerifier
from realtime.base.metrics import HubMetrics
from realtime.base.ratelimit import KeyedBuckets
from realtime.base.tasks import every, watch_loop_lag, wind_down
from realtime.bus.bus import CANVAS, Bus
from realtime.bus.bus_memory import Cluster
from realtime.bus.bus_redis import RedisCluster, redis_client, redis_cluster_client
from realtime.bus.subscription_redis import AnyRedis
from realtime.gateway.addresses import AddressLimits
from realtime.gateway.gateway import CLOSE_WAIT_S, Gateway
from realtime.gateway.server import HubServer
from realtime.internals import check_versions
from rest import (
    attendance,
    courses,
    day,
    dev,
    directory,
    docs,
    enrollments,
    health,
    notes,
    pages,
    sessions,
)
from rest import canvases as canvas_routes
from rest import cohorts as cohort_routes
from rest import help as help_routes
from rest import relationships as relationship_routes
from rest import timeline as timeline_routes
from rest.http import allow_cross_origin, error_middleware
from rest.keys import (
    BUS,
    CANVASES,
    COURSE_ANNOUNCEMENTS,
    DB,
    ENGINE,
    GATEWAY,
    HELP,
    METRICS,
    PRESENCE,
    REDIS,
    SESSIONS,
    SETTINGS,
    STOPPING,
    TIMERS,
    VERIFIER,
)
from rooms.control import ControlCenter
from rooms.course_announcements import CourseAnnouncements
from rooms.help import Clock, HelpDesk
from rooms.sessions import SessionRooms
from rooms.timers import Timers

log = logging.getLogger(__name__)
# How long a stopping hub lets the sweeps under way finish.
SWEEP_FINISH_S = 2.0
# The loop-lag watch's sleep: short enough to see a stall of tens of milliseconds.
LOOP_LAG_EVERY_S = 0.025
# How often freed C heap pages go back to the system (a trim takes 0.3-1 ms).
HEAP_TRIM_EVERY_S = 10.0
# How often hub_ready and hub_dependency_up are refreshed between scrapes.
READY_CHECK_EVERY_S = 5.0


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
    metrics = HubMetrics()
    verifier = TokenVerifier(
        settings, on_verified=lambda key: metrics.tokens_verified.labels(key).inc()
    )
    engine = create_engine(
        settings.database_url, echo=settings.database_echo, schema=settings.database_schema
    )
    db = session_factory(engine)
    reads = read_session_factory(engine)

    redis: AnyRedis | None = None
    if settings.redis_url:
        redis = redis_client(settings.redis_url)
    elif settings.redis_cluster_nodes:
        redis = redis_cluster_client(settings.cluster_nodes)
    cluster = RedisCluster(redis, metrics) if redis is not None else Cluster()
    sio = HubServer(
        cluster=cluster,
        metrics=metrics,
        async_mode="aiohttp",
        cors_allowed_origins=_cors(settings.cors_origins),
        max_http_buffer_size=settings.max_message_bytes,
        ping_interval=settings.ping_interval_s,
        ping_timeout=settings.ping_timeout_s,
        websocket_compression=settings.websocket_compression,
        max_queued_bytes=settings.max_queued_bytes,
        connect_within_s=settings.join_deadline_s,
        logger=False,
        engineio_logger=False,
        json=CODEC,
    )
    outbox = sio.outbox
    gateway = Gateway(
        sio,
        verifier=verifier,
        metrics=metrics,
        events_per_s=settings.socket_events_per_s,
        event_burst=settings.socket_event_burst,
        join_deadline_s=settings.join_deadline_s,
    )
    members = gateway.members
    people = directory.Directory(db)
    gateway.on_connect(people.record)
    live_presence = LivePresence(
        presence or _presence(redis, cluster),
        db=db,
        reads=reads,
        rooms=gateway,
        members=members,
        bus=cluster,
        clock=clock,
        idle_after_s=settings.idle_after_s,
        late_after_s=settings.late_after_s,
        grace_s=settings.presence_grace_s,
    )
    session_rooms = SessionRooms(
        members=members,
        rooms=gateway,
        presence=live_presence,
        bus=cluster,
        db=db,
        reads=reads,
        metrics=metrics,
        clock=clock,
    )
    gateway.on_disconnect(session_rooms.disconnected)

    relay = CanvasRelay(outbox, interval_s=settings.canvas_flush_interval_s, metrics=metrics)
    store_options: dict[str, Any] = dict(
        limits=CanvasLimits(
            max_ops_per_patch=settings.canvas_max_ops_per_patch,
            max_patch_bytes=settings.canvas_max_patch_bytes,
            max_canvas_bytes=settings.canvas_max_bytes,
            max_entries=settings.canvas_max_entries,
        ),
        retention=settings.canvas_log_retention,
        retention_bytes=settings.canvas_log_bytes,
        snapshot_every=settings.canvas_snapshot_every,
        snapshot_interval_s=settings.canvas_snapshot_interval_s,
        commit_linger_s=settings.canvas_commit_linger_s,
        metrics=metrics,
        on_durable=relay.durable,
    )
    store = build_store(
        reads,
        batch_writer(engine),
        **store_options,
        redis=redis,
        node_id=cluster.node_id,
    )
    if redis is not None:
        # Seqs and the recent log shared by every hub; patches other hubs made durable
        # arrive on the session's channel.
        cluster.on(CANVAS, store.receive)
        cluster.on_reconnect(store.resume)
    canvases = CanvasService(
        store,
        relay,
        reads=reads,
        members=members,
        activity=live_presence,
        keep_s=settings.presence_grace_s,
    )
    control = ControlCenter(
        db, members=members, rooms=gateway, activity=live_presence, ending=session_rooms
    )
    help_desk = HelpDesk(
        db,
        reads=reads,
        members=members,
        rooms=gateway,
        clock=clock,
        targets_s={
            HelpPriority.URGENT: settings.help_target_urgent_s,
            HelpPriority.HIGH: settings.help_target_high_s,
            HelpPriority.NORMAL: settings.help_target_normal_s,
            HelpPriority.LOW: settings.help_target_low_s,
        },
    )
    metrics.canvas_log_patches.set_function(store.logged_patches)
    metrics.canvas_log_bytes.set_function(store.logged_bytes)
    metrics.canvas_document_bytes.set_function(store.document_bytes)

    timers = Timers(
        db,
        help_desk,
        reads=reads,
        members=members,
        rooms=gateway,
        idle=live_presence.activity,
        lease=cluster,
        clock=clock,
        session_ending_warn_s=settings.session_ending_warn_s,
        idle_alert_s=settings.idle_alert_s,
        metrics=metrics,
    )
    # The features' events, and their parts of every join, leave and ending (in this
    # order: the join ack's fields and the leave hooks run as listed).
    for feature in (live_presence, session_rooms, canvases, control, help_desk, timers):
        gateway.add_routes(feature.routes())
    for extension in (canvases, help_desk, timers, control):
        session_rooms.extend(extension)
    course_announcements = CourseAnnouncements(
        db, reads=reads, rooms=gateway, lease=cluster, clock=clock
    )
    session_rooms.extend(course_announcements)

    app = web.Application(
        client_max_size=settings.max_request_bytes,
        middlewares=[
            error_middleware(
                metrics,
                verifier,
                KeyedBuckets(settings.rest_requests_per_s, settings.rest_request_burst),
                on_identity=people.record,
            ),
            AddressLimits(
                most=settings.max_connections_per_address,
                trusted=settings.trusted_proxies,
                body_timeout_s=settings.http_body_timeout_s,
                metrics=metrics,
            ).middleware,
        ],
    )
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[DB] = db
    app[VERIFIER] = verifier
    app[METRICS] = metrics
    app[GATEWAY] = gateway
    app[BUS] = cluster
    app[SESSIONS] = session_rooms
    app[PRESENCE] = live_presence
    app[CANVASES] = canvases
    app[HELP] = help_desk
    app[TIMERS] = timers
    app[COURSE_ANNOUNCEMENTS] = course_announcements
    app[STOPPING] = asyncio.Event()
    # Lazy: the client connects on first use.
    app[REDIS] = redis
    sio.attach(app, socketio_path="socket.io")
    app.add_routes(health.routes)
    if settings.metrics_port is None:
        app.add_routes(health.metrics_routes)
    else:
        app.cleanup_ctx.append(_metrics_port)
    app.add_routes(sessions.routes)
    app.add_routes(enrollments.routes)
    app.add_routes(canvas_routes.routes)
    app.add_routes(timeline_routes.routes)
    app.add_routes(help_routes.routes)
    app.add_routes(attendance.routes)
    app.add_routes(day.routes)
    app.add_routes(notes.routes)
    app.add_routes(courses.routes)
    app.add_routes(directory.routes)
    app.add_routes(relationship_routes.routes)
    app.add_routes(cohort_routes.routes)
    app.add_routes(docs.routes)
    if settings.development_mode:
        # Never in production: the development secret is refused there (config.py).
        app.add_routes(dev.routes)
    app.add_routes(pages.routes)
    allow_cross_origin(app, settings.cors_origins)
    app.on_shutdown.append(_disconnect_clients)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_canvas_store)
    app.cleanup_ctx.append(_idle_watch)
    return app


def _presence(redis: AnyRedis | None, cluster: Bus) -> PresenceTracker:
    if redis is None:
        return MemoryPresenceTracker()
    if isinstance(redis, RedisClusterClient):
        return RedisPresenceTracker(redis, cluster.node_id, prefix=PRESENCE_CLUSTER_PREFIX)
    return RedisPresenceTracker(redis, cluster.node_id)


async def _disconnect_clients(app: web.Application) -> None:
    started = time.perf_counter()
    log.info("stopping: SIGTERM or shutdown")
    app[STOPPING].set()
    app[METRICS].ready.set(0)
    gateway = app[GATEWAY]
    clients = len(gateway.members)
    await gateway.disconnect_all()
    if not app[BUS].shared:
        # Nobody else will mark them offline. In a cluster the other hubs do, unless
        # the students come back to one of them within their grace period.
        offline = await app[PRESENCE].stop_grace_timers()
        log.info("stopping: %d students in their grace period went offline", offline)
    await gateway.shutdown()
    await app[SESSIONS].stop(within_s=CLOSE_WAIT_S)
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


async def _watch_readiness(app: web.Application, stopping: asyncio.Event) -> None:
    """``hub_ready`` and ``hub_dependency_up`` from the start, then between scrapes."""

    async def check() -> None:
        await health.check_readiness(app)

    await check()
    await every(READY_CHECK_EVERY_S, check, "readiness", stopping)


def _since(started: float) -> float:
    return time.perf_counter() - started


async def _idle_watch(app: web.Application) -> AsyncIterator[None]:
    every_s = app[SETTINGS].presence_sweep_s
    stopping = asyncio.Event()
    tasks = [
        asyncio.create_task(
            watch_loop_lag(app[METRICS].loop_lag.observe, LOOP_LAG_EVERY_S, stopping)
        ),
        asyncio.create_task(app[PRESENCE].watch_idle(every_s, stopping)),
        asyncio.create_task(app[TIMERS].watch(every_s, stopping)),
        asyncio.create_task(app[COURSE_ANNOUNCEMENTS].watch(every_s, stopping)),
        asyncio.create_task(_watch_readiness(app, stopping)),
    ]
    trim = heap_trimmer()
    if trim is not None:

        async def trim_heap() -> None:
            trim()

        tasks.append(
            asyncio.create_task(every(HEAP_TRIM_EVERY_S, trim_heap, "heap trim", stopping))
        )
    yield
    # The sweeps finish the round under way before the database is closed.
    await wind_down(stopping, tasks, SWEEP_FINISH_S)


async def _metrics_port(app: web.Application) -> AsyncIterator[None]:
    """/metrics alone on HUB_METRICS_PORT, so that the public port need not serve it."""
    settings = app[SETTINGS]
    assert settings.metrics_port is not None
    metrics_app = web.Application()
    metrics_app[SETTINGS] = settings
    metrics_app[METRICS] = app[METRICS]
    metrics_app.add_routes(health.metrics_routes)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    host = settings.metrics_host or settings.host
    await web.TCPSite(runner, host, settings.metrics_port).start()
    log.info("metrics on %s", ", ".join(f"http://{h}:{p}/metrics" for h, p in _hosts(runner)))
    yield
    await runner.cleanup()


def _hosts(runner: web.AppRunner) -> list[tuple[str, int]]:
    return [(f"[{a[0]}]" if ":" in a[0] else a[0], a[1]) for a in runner.addresses]


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """The cluster's publisher and subscriber run from start to stop (a lone hub has none)."""
    cluster = app[BUS]
    tracker = app[PRESENCE].tracker
    await cluster.start()
    await tracker.start()
    yield
    await tracker.close()
    await cluster.close()
    client = app[REDIS]
    if client is not None:
        await client.aclose()
