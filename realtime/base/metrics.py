"""Prometheus metrics, one registry per app so that several hubs in one test process stay apart."""

from __future__ import annotations

import gc
import time
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The garbage collector stops the event loop while it runs; a full collection
# over a large heap is a latency spike every client feels. One histogram per
# process (gc.callbacks is process-wide), registered in every app's registry.
GC_PAUSES = Histogram(
    "hub_gc_pause_seconds",
    "Time the cyclic garbage collector stopped the process, by generation",
    ["generation"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started)


gc.callbacks.append(_time_gc)


def hub_version() -> str:
    """The installed distribution's version, or "unknown" when run from a bare tree."""
    try:
        return version("tutor-hub")
    except PackageNotFoundError:
        return "unknown"


class HubMetrics:
    """Every metric the hub exports.

    Label values come from fixed sets (event names the hub handles, route
    templates), never from client input, so a client cannot blow up the
    series count.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, GC_PAUSES):
            self.registry.register(collector)
        r = self.registry
        self.connections = Gauge("hub_connections", "Open Socket.IO connections", registry=r)
        self.connects = Counter(
            "hub_connects_total",
            "Socket.IO connection attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self.refused_connections = Counter(
            "hub_refused_connections_total",
            "HTTP requests and Socket.IO requests refused by a connection limit, by limit "
            "(address_limit, body_timeout)",
            ["limit"],
            registry=r,
        )
        self.dropped_connections = Counter(
            "hub_dropped_connections_total",
            "Websockets the hub dropped, by why (slow_consumer, not_admitted, ping_timeout, "
            "malformed_packet, join_timeout)",
            ["why"],
            registry=r,
        )
        self.joined = Gauge(
            "hub_joined_sessions",
            "Session memberships held by this process's sockets",
            registry=r,
        )
        self.events = Counter(
            "hub_events_total",
            "Client events by name and outcome (ok or error code)",
            ["event", "outcome"],
            registry=r,
        )
        self.event_seconds = Histogram(
            "hub_event_handler_seconds",
            "Client event handler latency",
            ["event"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.canvas_apply_seconds = Histogram(
            "hub_canvas_apply_seconds",
            "Validating and applying one patch in memory",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.canvas_commit_seconds = Histogram(
            "hub_canvas_commit_seconds",
            "One group commit of the canvas op log",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.canvas_commit_batch = Histogram(
            "hub_canvas_commit_batch_size",
            "Writes per group commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.canvas_relay_seconds = Histogram(
            "hub_canvas_relay_seconds",
            "From a patch being durable to its relay being emitted",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.canvas_relay_batch = Histogram(
            "hub_canvas_relay_batch_size",
            "Patches per canvas:patches event to a staff room",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.canvas_log_patches = Gauge(
            "hub_canvas_log_patches",
            "Patches held in memory for catch-up, all canvases",
            registry=r,
        )
        self.canvas_log_bytes = Gauge(
            "hub_canvas_log_bytes",
            "Encoded bytes of the patches held in memory for catch-up, all canvases",
            registry=r,
        )
        self.canvas_document_bytes = Gauge(
            "hub_canvas_document_bytes",
            "Encoded bytes of the canvas documents held in memory",
            registry=r,
        )
        self.loop_lag = Histogram(
            "hub_event_loop_lag_seconds",
            "How late the event loop woke a short sleep: time spent in work that did not yield",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_published = Counter(
            "hub_redis_published_total",
            "Frames this hub published to other hubs, by kind",
            ["kind"],
            registry=r,
        )
        self.redis_published_bytes = Counter(
            "hub_redis_published_bytes_total",
            "Bytes of frames this hub published, by kind",
            ["kind"],
            registry=r,
        )
        self.redis_received = Counter(
            "hub_redis_received_total",
            "Frames from other hubs this hub received, by kind",
            ["kind"],
            registry=r,
        )
        self.redis_received_bytes = Counter(
            "hub_redis_received_bytes_total",
            "Bytes of frames from other hubs, by kind",
            ["kind"],
            registry=r,
        )
        self.redis_echoes = Counter(
            "hub_redis_echoes_total",
            "This hub's own frames heard back on a channel it watches (dropped unread)",
            registry=r,
        )
        self.redis_subscriptions = Gauge(
            "hub_redis_subscriptions",
            "Session channels this hub subscribes to",
            registry=r,
        )
        self.redis_reconnects = Counter(
            "hub_redis_reconnects_total",
            "Times the Redis subscription was lost and retried",
            registry=r,
        )
        self.redis_publish_errors = Counter(
            "hub_redis_publish_errors_total",
            "Publish batches that failed (and were retried)",
            registry=r,
        )
        self.redis_publish_dropped = Counter(
            "hub_redis_publish_dropped_total",
            "Frames dropped because Redis was unreachable for too long",
            registry=r,
        )
        self.canvas_holds = Gauge(
            "hub_canvas_holds",
            "Canvases this hub holds, assigning their seqs (hubs sharing Redis)",
            registry=r,
        )
        self.canvas_handovers = Counter(
            "hub_canvas_handovers_total",
            "Canvases changing hands between hubs (leased): taken by this hub, let go, "
            "asked of their holder, found busy, taken over from a hub that was gone",
            ["event"],
            registry=r,
        )
        self.cluster_relay_seconds = Histogram(
            "hub_cluster_relay_seconds",
            "From another hub publishing a frame to this hub reading it (wall clocks)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_verified = Counter(
            "hub_tokens_verified_total",
            "Tokens verified, by the key that verified them (current, or previous while a "
            "key is rotated: when it stays at 0, the previous key can go)",
            ["key"],
            registry=r,
        )
        self.canvas_commit_failures = Counter(
            "hub_canvas_commit_failures_total",
            "Canvas writes that could not be stored: their patches were refused (INTERNAL), "
            "never acked",
            registry=r,
        )
        self.alerts = Counter(
            "hub_alerts_total",
            "The hub's alerts to a session's staff (timer:alert) stored and sent, by kind",
            ["kind"],
            registry=r,
        )
        # The help queue is read from the database by the hub leading the sweeps; the
        # others report 0, so a query across hubs takes the max.
        self.help_waiting = Gauge(
            "hub_help_requests_waiting",
            "Open help requests in live sessions, by priority (0 on hubs not leading the sweeps)",
            ["priority"],
            registry=r,
        )
        self.help_oldest_wait = Gauge(
            "hub_help_request_oldest_wait_seconds",
            "How long the oldest open help request in a live session has waited, by priority "
            "(0 on hubs not leading the sweeps)",
            ["priority"],
            registry=r,
        )
        self.help_overdue = Gauge(
            "hub_help_requests_overdue",
            "Open help requests waiting past their priority's target, by priority "
            "(0 on hubs not leading the sweeps)",
            ["priority"],
            registry=r,
        )
        self.ready = Gauge(
            "hub_ready",
            "1 while the last readiness check passed and the hub is not stopping, else 0",
            registry=r,
        )
        self.dependency_up = Gauge(
            "hub_dependency_up",
            "1 if the dependency (database, redis) answered the last check, else 0",
            ["dependency"],
            registry=r,
        )
        self.build_info = Gauge(
            "hub_build_info",
            "The hub's version, as a label (the value is 1)",
            ["version"],
            registry=r,
        )
        self.build_info.labels(hub_version()).set(1)
        self.http_requests = Counter(
            "hub_http_requests_total",
            "REST requests by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "hub_http_request_seconds",
            "REST request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
