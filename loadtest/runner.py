"""One mode against one target: start it fresh, set it up, drive the workers, read ``/proc``.

Each run starts its own target process (a fresh SQLite file in a temporary
directory for the hub) and stops it afterwards, so targets never overlap.
The target's CPU seconds are read at the common start instant and when the
last worker has reported; its RSS at the start, the end, the highest reading
in between (read about twice a second; not ``VmHWM``, which would include the
set-up) and once a second; the generator's CPU is the sum over its workers.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import hub_metrics
from loadtest.connections import ConnectionsConfig, IdleWorker
from loadtest.members import merge_errors
from loadtest.node_generator import NodePool
from loadtest.procs import ROOT, TargetProcess, pinned_cores, start_baseline, start_hub
from loadtest.report import percentiles
from loadtest.scenario import RelayConfig, RelayWorker, mix_of
from loadtest.sessions import SessionPlan, create_sessions, generated_sessions
from loadtest.storm import StormConfig, StormWorker
from loadtest.workers import WorkerPool, split

START_DELAY_S = 0.5
SETTLE_S = 2.0
SLACK_S = 120.0


# ``baseline``: the bare relay on the hub's loop, JSON and driver; ``baseline-stock``:
# on plain asyncio, the standard json and Engine.IO's driver (loadtest/baseline/relay.py).
TARGETS = ("hub", "baseline", "baseline-stock")


@dataclass(frozen=True)
class TargetSpec:
    kind: str
    root: Path
    label: str
    stock: bool = False


def target_specs(kinds: list[str], roots: list[Path]) -> list[TargetSpec]:
    """The runs, in order: one hub per checkout in ``roots``, and the baselines."""
    specs = []
    for kind in kinds:
        if kind.startswith("baseline"):
            specs.append(TargetSpec("baseline", ROOT, kind, stock=kind == "baseline-stock"))
            continue
        for root in roots:
            label = "hub" if len(roots) == 1 else f"hub@{root}"
            specs.append(TargetSpec("hub", root, label))
    return specs


@contextmanager
def started(
    spec: TargetSpec, workdir: Path, hub_env: dict[str, str], cpus: list[int] | None = None
) -> Iterator[TargetProcess]:
    label = spec.label.replace("/", "_")
    if spec.kind == "hub":
        target = start_hub(workdir, root=spec.root, extra_env=hub_env, label=label, cpus=cpus)
    else:
        target = start_baseline(workdir, label=label, stock=spec.stock, cpus=cpus)
    try:
        yield target
    finally:
        target.stop()


def plans_for(target: TargetProcess, sessions: int, students: int) -> list[SessionPlan]:
    if target.kind == "hub":
        return asyncio.run(create_sessions(target.url, target.secret, sessions, students))
    return generated_sessions(sessions, students)


@dataclass
class Window:
    """The target's CPU and memory over a measured window; its RSS once a second."""

    target: TargetProcess
    start_at: float = 0.0
    cpu_start: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    # The first reading in each second of the window (None: no tick in that second).
    rss_per_s: list[float | None] = field(default_factory=list)

    def begin(self, start_at: float) -> None:
        time.sleep(max(0.0, start_at - time.perf_counter()))
        self.start_at = start_at
        self.cpu_start = self.target.cpu_seconds()
        self.rss_start = self.rss_peak = self.target.rss_mib()
        self.rss_per_s = [self.rss_start]

    def tick(self) -> None:
        rss = self.target.rss_mib()
        self.rss_peak = max(self.rss_peak, rss)
        second = int(time.perf_counter() - self.start_at)
        if second >= len(self.rss_per_s):
            self.rss_per_s += [None] * (second - len(self.rss_per_s)) + [rss]

    def end(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start_at
        cpu = self.target.cpu_seconds() - self.cpu_start
        return {
            "window_s": round(seconds, 2),
            "hub_cpu_s": round(cpu, 2),
            "hub_cpu_share": round(cpu / seconds, 2) if seconds else None,
            "hub_rss_mib": {"start": round(self.rss_start, 1),
                            "end": round(self.target.rss_mib(), 1),
                            "peak": round(max(self.rss_peak, self.target.rss_mib()), 1)},
            "hub_rss_mib_per_s": [None if x is None else round(x, 1) for x in self.rss_per_s],
        }  # fmt: skip


def scrape_metrics(target: TargetProcess) -> dict[str, Any]:
    """The hub's end-of-run figures from its ``/metrics`` (``loadtest.hub_metrics``);
    empty for a target without one."""
    text = target.get_text("/metrics") if target.kind == "hub" else None
    return hub_metrics.read(text) if text else {}


def _common(spec: TargetSpec, target: TargetProcess, workers: int) -> dict[str, Any]:
    # exit_code None: the target outlived SIGTERM by STOP_TIMEOUT_S and was killed.
    return {"target": spec.label, "kind": spec.kind, "root": str(spec.root), "workers": workers,
            "exit_code": target.exit_code, "log_problems": target.log_problems(),
            **({"stack": target.stack} if target.stack else {})}  # fmt: skip


def generator_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "generator_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "generator_cpu_s_per_worker": [round(r["cpu_s"], 2) for r in results],
    }


def generator_load(results: list[dict[str, Any]], window_s: float) -> dict[str, Any]:
    """How busy the generator was: its CPU over the window in cores (the busiest
    process's share near 1.0: it was the bottleneck), and, where the generator
    reports it (Node), how late its own timers ran and which client it ran."""
    out: dict[str, Any] = {
        "generator_cpu_share_max": round(max(r["cpu_s"] for r in results) / window_s, 2)
        if window_s
        else None,
    }
    delays = [r["loop_delay_ms"] for r in results if "loop_delay_ms" in r]
    if delays:
        out["generator_loop_delay_ms"] = {k: max(d[k] for d in delays) for k in delays[0]}
    clients = sorted({r["client"] for r in results if "client" in r})
    if clients:
        out["generator_client"] = ", ".join(clients)
    return out


def relay_pool(
    args: argparse.Namespace,
    target: TargetProcess,
    plans: list[SessionPlan],
    workdir: Path,
    cpus: list[int] | None,
) -> tuple[WorkerPool | NodePool, dict[str, Any]]:
    """The generator ``--generator`` names, and what the summary says about it: Python
    worker processes (``loadtest/workers.py``), or one Node process
    (``loadtest/node_generator.py``) on one core."""

    def config(part: tuple[SessionPlan, ...]) -> RelayConfig:
        return RelayConfig(target.url, target.secret, part, args.rate, args.seconds,
                           growing=args.growing, mix=mix_of(args))  # fmt: skip

    if getattr(args, "generator", "python") == "node":
        deflate = not getattr(args, "no_deflate", False)
        pool = NodePool(config(tuple(plans)), workdir, deflate)
        return pool, {"generator": "node", "generator_cpus": [pool.core],
                      "websocket_deflate": deflate}  # fmt: skip
    parts = split(plans, args.workers)
    return WorkerPool(RelayWorker, [config(tuple(p)) for p in parts], cpus), {
        "generator": "python",
        "generator_cpus": cpus,
        "websocket_deflate": False,
    }


def run_relay(
    spec: TargetSpec,
    args: argparse.Namespace,
    workdir: Path,
    hub_env: dict[str, str],
    window_class: type[Window] = Window,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The relay mix; the summary, and the raw samples the plot needs. ``window_class``
    measures the hub meanwhile (``loadtest.soak`` samples more)."""
    target_cpus, generator_cpus = pinned_cores(getattr(args, "pin", False))
    with started(spec, workdir, hub_env, target_cpus) as target:
        began = time.perf_counter()
        plans = plans_for(target, args.sessions, args.students)
        setup_s = time.perf_counter() - began
        pool, generator = relay_pool(args, target, plans, workdir, generator_cpus)
        with pool:
            pool.ready()
            window = window_class(target)
            start_at = time.perf_counter() + START_DELAY_S
            pool.go(start_at)
            window.begin(start_at)
            results = pool.done(args.seconds + SLACK_S, window.tick)
            # Read before the window closes (its own small CPU cost counts in the window).
            metrics = scrape_metrics(target)
            measured = window.end()

    figures, samples = relay_figures(results, args.seconds)
    summary = {
        **_common(spec, target, len(results)),
        **generator,
        "target_cpus": target_cpus,
        "sessions": args.sessions,
        "students_per_session": args.students,
        "rate_hz": args.rate,
        "seconds": args.seconds,
        "setup_s": round(setup_s, 2),
        **figures,
        "patches_per_hub_cpu_s": round(figures["delivered"] / measured["hub_cpu_s"], 1)
        if measured["hub_cpu_s"]
        else None,
        **measured,
        "hub_metrics": metrics,
        **generator_figures(results),
        **generator_load(results, measured["window_s"]),
    }
    samples["rss_mib_per_s"] = measured["hub_rss_mib_per_s"]
    return summary, {"target": spec.label, **samples}


def relay_figures(
    results: list[dict[str, Any]], seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The relay workers' results summed: counts, percentiles; and the raw samples for a plot."""

    def total(key: str) -> int:
        return sum(int(r[key]) for r in results)

    latencies = [x for r in results for x in r["latency_ms"]]
    per_s = [sum(col) for col in zip(*(r["delivered_per_s"] for r in results), strict=True)]
    while len(per_s) > seconds and not per_s[-1]:
        per_s.pop()  # the drain's empty seconds
    sent_s = [x for r in results for x in r["latency_sent_s"]]
    over_time = latency_per_second(latencies, sent_s)
    figures = {
        **{k: total(k) for k in RELAY_COUNTS},
        "latency_ms": percentiles(latencies),
        "latency_ms_per_s": over_time,
        "ack_latency_ms": percentiles([x for r in results for x in r["ack_ms"]]),
        "delivered_per_s": per_s,
        "events_ok": sum_counts([r["events_ok"] for r in results]),
        "errors": merge_errors(results),
    }
    return figures, {"latency_ms": latencies, "delivered_per_s": per_s,
                     "latency_ms_per_s": over_time}  # fmt: skip


def latency_per_second(latencies: list[float], sent_s: list[int]) -> dict[str, list[Any]]:
    """p50, p99 and max of the latencies, by the second of the run each patch was sent
    in (None for a second nothing sent in arrived), so a stall shows with its time."""
    by_second: list[list[float]] = [[] for _ in range(max(sent_s, default=-1) + 1)]
    for latency, second in zip(latencies, sent_s, strict=True):
        by_second[second].append(latency)
    figures = [percentiles(values) for values in by_second]
    return {key: [f[key] for f in figures] for key in ("n", "p50", "p99", "max")}


RELAY_COUNTS = (
    "students", "tutors", "sent", "acked", "skipped", "delivered", "lost", "duplicated",
    "out_of_order", "relay_events", "annotations_sent", "annotations_acked",
    "annotations_delivered", "annotations_lost",
)  # fmt: skip


def sum_counts(maps: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in maps:
        for key, n in counts.items():
            out[key] = out.get(key, 0) + n
    return out


def run_connections(
    spec: TargetSpec, args: argparse.Namespace, workdir: Path, hub_env: dict[str, str]
) -> dict[str, Any]:
    """Idle joined connections; the target's RSS before connecting and after."""
    sessions = math.ceil(args.connections / args.per_session)
    with started(spec, workdir, hub_env) as target:
        began = time.perf_counter()
        plans = plans_for(target, sessions, args.per_session)
        setup_s = time.perf_counter() - began
        configs = [
            ConnectionsConfig(target.url, target.secret, tuple(part))
            for part in split(plans, args.workers)
        ]
        with WorkerPool(IdleWorker, configs) as pool:
            pool.ready()
            time.sleep(SETTLE_S)
            window = Window(target)
            start_at = time.perf_counter() + START_DELAY_S
            pool.go(start_at)
            window.begin(start_at)
            results = pool.done(SLACK_S * 5, window.tick)
            connect_s = time.perf_counter() - start_at
            time.sleep(SETTLE_S)
            measured = window.end()
            held = _hold(target, args.hold_seconds)
    joined = sum(r["joined"] for r in results)
    grown_mib = measured["hub_rss_mib"]["end"] - measured["hub_rss_mib"]["start"]
    idle_cpu = held.get("hub_idle_cpu_s_per_s")
    return {
        **_common(spec, target, len(configs)),
        "sessions": sessions,
        "students": sessions * args.per_session,
        "tutors": sessions,
        "clients": sum(r["clients"] for r in results),
        "joined": joined,
        "failed": sum_counts([r["failed"] for r in results]),
        "setup_s": round(setup_s, 2),
        "connect_s": round(connect_s, 2),
        "join_ms": percentiles([x for r in results for x in r["join_ms"]]),
        "hub_rss_mib_before": measured["hub_rss_mib"]["start"],
        "hub_rss_mib_after": measured["hub_rss_mib"]["end"],
        "hub_rss_kib_per_connection": round(grown_mib * 1024 / joined, 1) if joined else None,
        "hub_cpu_s": measured["hub_cpu_s"],
        **held,
        # The cores 1,000 joined idle connections keep busy (pings, presence, timers).
        "hub_idle_cores_per_1k_connections": (
            round(idle_cpu * 1000 / joined, 5) if idle_cpu is not None and joined else None
        ),
        **generator_figures(results),
    }


def _hold(target: TargetProcess, seconds: float) -> dict[str, Any]:
    """The hub's CPU and RSS while everyone stays joined and idle for ``seconds`` (none
    for 0): what connections cost while nothing happens, Engine.IO pings (every
    ``HUB_PING_INTERVAL_S``, 25 s) and the presence and session sweeps included."""
    if seconds <= 0:
        return {}
    cpu_start = target.cpu_seconds()
    time.sleep(seconds)
    cpu = target.cpu_seconds() - cpu_start
    return {
        "hold_s": seconds,
        "hub_idle_cpu_s_per_s": round(cpu / seconds, 4),
        "hub_rss_mib_after_hold": round(target.rss_mib(), 1),
    }


def run_storm(
    spec: TargetSpec, args: argparse.Namespace, workdir: Path, hub_env: dict[str, str]
) -> dict[str, Any]:
    """Everyone drops and re-joins with ``since``; recovery time and missed patches."""
    sessions = math.ceil(args.students / args.per_session)
    with started(spec, workdir, hub_env) as target:
        plans = plans_for(target, sessions, args.per_session)
        configs = [
            StormConfig(
                target.url,
                target.secret,
                tuple(part),
                rate=args.rate,
                drop_after_s=args.drop_after,
                drop=args.drop,
            )
            for part in split(plans, args.workers)
        ]
        with WorkerPool(StormWorker, configs) as pool:
            pool.ready()
            window = Window(target)
            start_at = time.perf_counter() + START_DELAY_S
            pool.go(start_at)
            window.begin(start_at)
            results = pool.done(SLACK_S * 3, window.tick)
            measured = window.end()
    recovery = [x for r in results for x in r["recovery_s"]]
    dropped = sum_counts([r["dropped"] for r in results])
    counts = ("clients", "recovered", "sent", "acked", "final_seqs", "missed", "acked_missing",
              "tail_missing", "unverified_canvases")  # fmt: skip
    return {
        **_common(spec, target, len(configs)),
        "sessions": sessions,
        "students": sessions * args.per_session,
        "rate_hz": args.rate,
        "drop": args.drop,
        "dropped": dropped,
        "dropped_total": sum(dropped.values()),
        **{k: sum(r[k] for r in results) for k in counts},
        "failed": sum_counts([r["failed"] for r in results]),
        "recovery_s": round(max(recovery), 2) if recovery else None,
        "recovery_ms": percentiles([x * 1000 for x in recovery]),
        "join_answers": sum_counts([r["join_answers"] for r in results]),
        "errors": merge_errors(results),
        **measured,
        **generator_figures(results),
    }
