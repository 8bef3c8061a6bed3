"""``python -m loadtest soak``: the relay mix for many minutes; the hub's RSS, open file
descriptors and event-loop lag over time, and whether each stayed flat.

The relay run's window (``runner.Window``) samples the hub every
``SAMPLE_EVERY_S`` as well: its RSS, how many descriptors ``/proc/<pid>/fd``
lists, and its loop-lag histogram off ``/metrics``. The report is a row a
minute, and a verdict per series past the warm-up (``WARM_UP_MIN``): RSS and
descriptors by their least-squares slope (per 10 minutes, against a bound), loop
lag by readings over 50 ms in the second half against the first.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import TargetProcess
from loadtest.runner import Window

SAMPLE_EVERY_S = 10.0
WARM_UP_MIN = 5
MAX_MINUTES = 60
# Past the warm-up, what still counts as flat per 10 minutes.
RSS_SLOPE_MIB = 5.0
FDS_SLOPE = 2.0
LAG = "hub_event_loop_lag_seconds"
LAG_OVER_S = 0.05


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def lag_over(target: TargetProcess, threshold: float = LAG_OVER_S) -> tuple[int, int] | None:
    """(readings, readings over ``threshold``) of the hub's loop-lag histogram so far."""
    text = target.get_text("/metrics")
    if not text:
        return None
    count = below = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != LAG:
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == threshold:
                below += sample.value
    return int(count), int(count - below)


@dataclass
class SoakWindow(Window):
    """A relay window that also samples the hub every ``SAMPLE_EVERY_S``."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    _next_at: float = 0.0

    def begin(self, start_at: float) -> None:
        super().begin(start_at)
        self._next_at = start_at
        self._sample()

    def tick(self) -> None:
        super().tick()
        if time.perf_counter() >= self._next_at:
            self._sample()

    def _sample(self) -> None:
        self._next_at += SAMPLE_EVERY_S
        lag = lag_over(self.target)
        self.samples.append(
            {
                "s": round(time.perf_counter() - self.start_at, 1),
                "rss_mib": round(self.target.rss_mib(), 1),
                "fds": open_fds(self.target.pid),
                "lag_readings": lag[0] if lag else None,
                "lag_over_50ms": lag[1] if lag else None,
            }
        )

    def end(self) -> dict[str, Any]:
        return {**super().end(), "soak_samples": self.samples}


def slope_per_10_min(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, value) points, per 600 s."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if not var:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 600


def summary(run: dict[str, Any], warm_up_min: float = WARM_UP_MIN) -> dict[str, Any]:
    """Per minute: RSS, descriptors, loop-lag readings over 50 ms, delivered, p99; and
    the verdicts past ``warm_up_min``."""
    samples = run["soak_samples"]
    per_s_p99 = run["latency_ms_per_s"].get("p99", [])
    delivered = run["delivered_per_s"]
    minutes = []
    previous_over = 0
    for minute in range(math.ceil(run["seconds"] / 60)):
        inside = [s for s in samples if minute * 60 <= s["s"] < (minute + 1) * 60]
        if not inside:
            continue
        last = inside[-1]
        over = last["lag_over_50ms"] or 0
        window = slice(minute * 60, (minute + 1) * 60)
        p99s = [p for p in per_s_p99[window] if p is not None]
        minutes.append(
            {
                "minute": minute + 1,
                "rss_mib": last["rss_mib"],
                "fds": last["fds"],
                "lag_over_50ms": over - previous_over,
                "delivered": sum(delivered[window]),
                "p99_ms_worst_second": max(p99s) if p99s else None,
            }
        )
        previous_over = over
    settled = [s for s in samples if s["s"] >= warm_up_min * 60]
    rss_slope = slope_per_10_min([(s["s"], s["rss_mib"]) for s in settled])
    fds_slope = slope_per_10_min([(s["s"], s["fds"]) for s in settled])
    after = [m for m in minutes if m["minute"] > warm_up_min]
    half = len(after) // 2
    lag_first = sum(m["lag_over_50ms"] for m in after[:half])
    lag_second = sum(m["lag_over_50ms"] for m in after[half : 2 * half])
    return {
        "warm_up_min": warm_up_min,
        "minutes": minutes,
        "rss_mib_per_10_min": None if rss_slope is None else round(rss_slope, 2),
        "fds_per_10_min": None if fds_slope is None else round(fds_slope, 2),
        "lag_over_50ms_halves": [lag_first, lag_second],
        "rss_flat": rss_slope is not None and abs(rss_slope) <= RSS_SLOPE_MIB,
        "fds_flat": fds_slope is not None and abs(fds_slope) <= FDS_SLOPE,
        # Flat: the second half no worse than twice the first, give or take a few.
        "lag_flat": lag_second <= 2 * lag_first + 5,
        "zero_loss": run["lost"] == 0 and run["acked"] == run["sent"],
    }


def table(runs: list[dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        found = run["soak"]
        lines += [
            f"{run['target']}: {run['sent']:,} sent, {run['acked']:,} acked, "
            f"{run['delivered']:,} delivered, {run['lost']} lost, {run['duplicated']} doubled, "
            f"{run['out_of_order']} out of order; p50 {run['latency_ms']['p50']} / p99 "
            f"{run['latency_ms']['p99']} / max {run['latency_ms']['max']} ms",
            "",
            "| minute | RSS MiB | open fds | loop lag over 50 ms | delivered "
            "| worst second's p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {m['minute']} | {m['rss_mib']} | {m['fds']} | {m['lag_over_50ms']} | "
            f"{m['delivered']:,} | {m['p99_ms_worst_second']} |"
            for m in found["minutes"]
        ]
        lines += [
            "",
            f"after minute {found['warm_up_min']:g}: RSS {found['rss_mib_per_10_min']} MiB "
            f"per 10 min (flat: {found['rss_flat']}, bound {RSS_SLOPE_MIB:g}); open fds "
            f"{found['fds_per_10_min']} per 10 min (flat: {found['fds_flat']}, bound "
            f"{FDS_SLOPE:g}); loop lag over 50 ms, first half {found['lag_over_50ms_halves'][0]}, "
            f"second half {found['lag_over_50ms_halves'][1]} (flat: {found['lag_flat']}); "
            f"zero loss: {found['zero_loss']}",
        ]
    return "\n".join(lines)
