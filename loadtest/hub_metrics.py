"""The hub's own figures at the end of a run, read off its ``/metrics`` (Prometheus text).

Only what the hub exports is reported: a checkout without one of these
metrics (an older hub, the baseline, which serves no ``/metrics``) simply
leaves it out. Histograms are summed over their label sets; their tails are
read off the cumulative buckets, so they are as coarse as the buckets are.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

LOOP_LAG = "hub_event_loop_lag_seconds"
LOOP_LAG_OVER_S = (0.05, 0.25)
GC_PAUSES = "hub_gc_pause_seconds"
GAUGES = ("hub_canvas_document_bytes", "hub_canvas_log_bytes")
HISTOGRAMS = ("hub_canvas_commit_seconds", "hub_canvas_commit_batch_size")
# Frames through Redis each way, and what went wrong on the way (issue 21: frames a
# hub published against frames the other hub read tell where a lost patch was lost).
COUNTERS = (
    "hub_redis_published", "hub_redis_received", "hub_redis_echoes", "hub_redis_reconnects",
    "hub_redis_publish_errors", "hub_redis_publish_dropped", "hub_canvas_handovers",
)  # fmt: skip


def read(text: str) -> dict[str, Any]:
    """The figures ``text`` holds, by metric name (see the module docstring)."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    out: dict[str, Any] = {}
    if LOOP_LAG in families:
        out[LOOP_LAG] = histogram(families[LOOP_LAG], over=LOOP_LAG_OVER_S)
    if GC_PAUSES in families:  # every generation together
        out[GC_PAUSES] = histogram(families[GC_PAUSES], over=LOOP_LAG_OVER_S)
    for name in GAUGES:
        if name in families:
            out[name] = sum(s.value for s in families[name].samples if s.name == name)
    for name in HISTOGRAMS:
        if name in families:
            out[name] = histogram(families[name])
    for name in COUNTERS:  # the parser names a counter's family without ``_total``
        if name in families:
            out[name] = sum(s.value for s in families[name].samples if s.name == name + "_total")
    return out


def histogram(family: Metric, over: tuple[float, ...] = ()) -> dict[str, Any]:
    """Count, sum, an upper bound on the p99 (the first bucket holding it), and how
    many observations were above each of ``over`` (read at the largest bucket bound
    at or below it, which names the key: ``over_0.05``)."""
    buckets: dict[float, float] = {}
    count = total = 0.0
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            le = float(sample.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + sample.value
        elif sample.name.endswith("_count"):
            count += sample.value
        elif sample.name.endswith("_sum"):
            total += sample.value
    out: dict[str, Any] = {"count": int(count), "sum": round(total, 4)}
    bounds = sorted(buckets)
    p99 = next((le for le in bounds if buckets[le] >= 0.99 * count), None) if count else None
    out["p99_at_most"] = p99 if p99 is not None and math.isfinite(p99) else None
    for threshold in over:
        below = [le for le in bounds if le <= threshold]
        at = below[-1] if below else 0.0
        out[f"over_{at:g}"] = int(count - (buckets[at] if below else 0.0))
    return out
