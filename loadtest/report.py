"""Figures out of raw samples: percentiles, hub-against-baseline ratios, the plot, the record.

The JSON summary keeps percentiles (overall and per second), not samples; the
plot (``--plot``) shows each target's latency CDF, delivered patches per
second, latency p99 and max over time, and RSS over time; ``--record``
appends the run to ``docs/benchmarks.md`` with the exact command, the date and
the machine's CPU count.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max (nearest rank), rounded to 0.1; None without samples."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)

    return {"n": len(ordered), "p50": rank(0.5), "p95": rank(0.95), "p99": rank(0.99),
            "max": round(ordered[-1], 1)}  # fmt: skip


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# What each baseline target is, for the ratio lines (loadtest/baseline/relay.py).
REFERENCES = {"baseline": "like-for-like relay", "baseline-stock": "stock relay"}
# A target held the load: nothing lost, p99 within this (docs/benchmarks.md's "held").
HELD_P99_MS = 100.0


def held(summary: dict[str, Any]) -> bool:
    """Nothing lost and p99 latency at most ``HELD_P99_MS``: a ratio between two
    runs that did not both hold compares two queues, not two costs."""
    p99 = summary["latency_ms"]["p99"]
    return summary["lost"] == 0 and p99 is not None and p99 <= HELD_P99_MS


def relay_ratios(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each hub run against the like-for-like baseline, the stock one beside it (and
    against the first hub run, for before/after)."""
    hubs = [s for s in summaries if s["kind"] == "hub"]
    baselines = [s for s in summaries if s["kind"] == "baseline"]
    # The like-for-like relay first: the headline ratio is stated against it.
    baselines.sort(key=lambda s: s["target"] != "baseline")
    out = []
    for hub in hubs:
        for ref in baselines + hubs[:1]:
            if ref is hub:
                continue
            out.append({
                "pair": f"{hub['target']} / {ref['target']}",
                "reference": REFERENCES.get(ref["target"], ref["target"]),
                "patches_per_hub_cpu_s": ratio(
                    hub["patches_per_hub_cpu_s"], ref["patches_per_hub_cpu_s"]
                ),
                "latency_p50": ratio(hub["latency_ms"]["p50"], ref["latency_ms"]["p50"]),
                "latency_p99": ratio(hub["latency_ms"]["p99"], ref["latency_ms"]["p99"]),
                "overloaded": [s["target"] for s in (hub, ref) if not held(s)],
            })  # fmt: skip
    return out


def relay_table(summaries: list[dict[str, Any]]) -> str:
    """A markdown table of the relay figures, one row per target."""
    head = ("| target | sent | acked | delivered | lost | dup | ooo | hub CPU s | gen CPU s "
            "| patches/hub CPU s | p50 ms | p99 ms | max ms | ack p50 ms |")  # fmt: skip
    rows = [head, "|" + "---|" * 14]
    for s in summaries:
        lat, ack = s["latency_ms"], s["ack_latency_ms"]
        rows.append(
            f"| {s['target']} | {s['sent']} | {s['acked']} | {s['delivered']} | {s['lost']} "
            f"| {s['duplicated']} | {s['out_of_order']} | {s['hub_cpu_s']} "
            f"| {s['generator_cpu_s']} | {s['patches_per_hub_cpu_s']} | {lat['p50']} "
            f"| {lat['p99']} | {lat['max']} | {ack['p50']} |"
        )
    return "\n".join(rows)


def generator_lines(summaries: list[dict[str, Any]]) -> str:
    """Per run, what drove the load and how busy it was: a process's CPU share near
    1.0 means the generator, not the target, set the pace."""
    lines = []
    for s in summaries:
        if "generator_cpu_share_max" not in s:
            continue
        where = s.get("generator_cpus")
        line = (
            f"{s['target']}: generator {s.get('generator', 'python')} "
            f"({s['workers']} process{'es' if s['workers'] != 1 else ''}"
            + (f" on CPU {','.join(map(str, where))}" if where else "")
            + f"), {s['generator_cpu_s']} CPU-s in {s['window_s']} s, busiest process "
            f"{s['generator_cpu_share_max']} of a core"
        )
        if "websocket_deflate" in s:
            line += f"; websocket deflate {'on' if s['websocket_deflate'] else 'off'}"
        if s.get("target_cpus"):
            line += f"; the target alone on CPU {','.join(map(str, s['target_cpus']))}"
        delay = s.get("generator_loop_delay_ms")
        if delay:
            line += (
                f"; its timers late p50 {delay['p50']} ms, p99 {delay['p99']}, max {delay['max']}"
            )
        lines.append(line)
    return "\n".join(lines)


def ratio_lines(ratios: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['pair']} ({r['reference']}): patches per hub CPU-second "
        f"x{r['patches_per_hub_cpu_s']}, latency p50 x{r['latency_p50']}, p99 x{r['latency_p99']}"
        + (
            f"; overloaded (loss, or p99 over {HELD_P99_MS:g} ms): {', '.join(r['overloaded'])}"
            if r.get("overloaded")
            else ""
        )
        for r in ratios
    )


def hub_metrics_lines(summaries: list[dict[str, Any]]) -> str:
    """The hub's own end-of-run figures (``hub_metrics``), a line per run that has any."""
    lines = []
    for s in summaries:
        found = s.get("hub_metrics") or {}
        parts = []
        lag = found.get("hub_event_loop_lag_seconds")
        if lag:
            parts.append(f"event-loop lag {lag['count']} readings, {_over(lag)}")
        gc_pauses = found.get("hub_gc_pause_seconds")
        if gc_pauses:
            parts.append(
                f"{gc_pauses['count']} GC pauses, {gc_pauses['sum']} s in all, {_over(gc_pauses)}"
            )
        for name in ("hub_canvas_document_bytes", "hub_canvas_log_bytes"):
            if name in found:
                parts.append(f"{name.removeprefix('hub_canvas_')} {found[name]:,.0f}")
        commit = found.get("hub_canvas_commit_seconds")
        if commit:
            parts.append(f"{commit['count']} commits, p99 <= {commit['p99_at_most']} s")
        if parts:
            lines.append(f"{s['target']}: " + "; ".join(parts))
    return "\n".join(lines)


def _over(histogram: dict[str, Any]) -> str:
    """``histogram``'s counts over its thresholds: "3 over 0.05 s, 0 over 0.25 s"."""
    return ", ".join(f"{v} {k.replace('_', ' ')} s" for k, v in histogram.items() if "over" in k)


def plot(path: Path, runs: list[dict[str, Any]]) -> None:
    """Per target: the latency CDF, patches delivered per second, p99 and max latency
    by the second a patch was sent, and the target's RSS once a second.

    ``runs``: ``{"target", "latency_ms": [...], "delivered_per_s": [...],
    "latency_ms_per_s": {"p99": [...], "max": [...]}, "rss_mib_per_s": [...]}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((cdf, rate), (lag, rss)) = plt.subplots(2, 2, figsize=(12, 9))
    for run in runs:
        ordered = sorted(run["latency_ms"])
        if ordered:
            ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
            cdf.plot(ordered, ys, label=run["target"])
        rate.plot(range(len(run["delivered_per_s"])), run["delivered_per_s"], label=run["target"])
        over_time = run.get("latency_ms_per_s") or {}
        (line,) = lag.plot(over_time.get("p99", []), marker=".", label=f"{run['target']} p99")
        lag.plot(over_time.get("max", []), linestyle="--", color=line.get_color(),
                 label=f"{run['target']} max")  # fmt: skip
        rss.plot(run.get("rss_mib_per_s", []), marker=".", label=run["target"])
    cdf.set_xscale("log")
    cdf.set(title="Student-to-tutor latency (CDF)", xlabel="ms", ylabel="fraction of patches")
    rate.set(title="Patches delivered to tutors", xlabel="s since start", ylabel="patches / s")
    lag.set_yscale("log")
    lag.set(title="Latency by the second the patch was sent", xlabel="s since start", ylabel="ms")
    rss.set(title="Target's resident memory", xlabel="s since start", ylabel="MiB")
    for ax in (cdf, rate, lag, rss):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def record(title: str, body: str, path: Path = BENCHMARKS) -> None:
    """Append a section to the benchmarks document: the exact command, date, CPU count."""
    command = "python -m loadtest " + shlex.join(sys.argv[1:])
    today = dt.date.today().isoformat()
    with path.open("a") as doc:
        doc.write(
            f"\n### {title}\n\n`{command}`\n({today}, os.cpu_count() = {os.cpu_count()})\n\n"
            f"{body}\n"
        )


FANOUT_COLUMNS = (
    ("target", "target"), ("nodes", "nodes"), ("sent", "sent"), ("acked", "acked"),
    ("delivered", "delivered"), ("lost", "lost"), ("dup", "duplicated"), ("ooo", "out_of_order"),
    ("busy CPU s", "busy_cpu_s"), ("busy CPU s / 1k", "busy_cpu_s_per_1k"),
    ("idle CPU s", "idle_cpu_s"), ("idle CPU s / 1k", "idle_cpu_s_per_1k"),
    ("idle over rest / 1k", "idle_cpu_s_over_rest_per_1k"),
    ("redis CPU s", "redis_cpu_s"), ("busy + redis CPU s / 1k", "busy_with_redis_cpu_s_per_1k"),
    ("hubs + redis CPU s / 1k", "hubs_with_redis_cpu_s_per_1k"),
    ("redis cmds / patch", "redis_commands_per_patch"), ("gen CPU s", "generator_cpu_s"),
)  # fmt: skip
# (figure, numerator target, denominator target, the bound or None). The busy
# node's bound is issue 18's: with Redis's CPU counted; without it, for comparison.
FANOUT_RATIOS = (
    ("idle_cpu_s_per_1k", "hub-redis", "baseline-redis", "issue 5: under 0.05"),
    ("idle_cpu_s_per_1k", "hub-redis", "baseline-stock-redis", None),
    ("idle_cpu_s_over_rest_per_1k", "hub-redis", "baseline-redis", None),
    ("busy_with_redis_cpu_s_per_1k", "hub-redis", "hub", "issue 18: at most 1.2, Redis counted"),
    ("busy_cpu_s_per_1k", "hub-redis", "hub", None),
    ("busy_with_redis_cpu_s_per_1k", "baseline-redis", "baseline", None),
    ("busy_with_redis_cpu_s_per_1k", "baseline-stock-redis", "baseline-stock", None),
    # Issue 21: the same two hubs on a 3-primary cluster against one Redis.
    ("hubs_with_redis_cpu_s_per_1k", "hub-cluster", "hub-redis", None),
    ("hubs_with_redis_cpu_s_over_rest_per_1k", "hub-cluster", "hub-redis", None),
    ("redis_cpu_s_per_1k", "hub-cluster", "hub-redis", None),
    ("busy_cpu_s_per_1k", "hub-cluster", "hub-redis", None),
    ("idle_cpu_s_per_1k", "hub-cluster", "hub-redis", None),
    ("redis_net_bytes_per_patch", "hub-cluster", "hub-redis", None),
)
COMMANDS_PER_PATCH_BOUND = 3  # issue 18, two hubs


def fanout_ratios(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Idle node, hub against stock manager; busy node, with Redis against alone; with
    several roots (``hub@2``), each root's pairs, then each hub run against root 1's."""
    by_name = {s["target"]: s for s in summaries}
    tags = sorted({s["target"].partition("@")[2] for s in summaries if s["kind"] == "hub"})
    out = []

    def add(key: str, top: str, bottom: str, bound: str | None) -> None:
        if top in by_name and bottom in by_name:
            value = ratio(by_name[top].get(key), by_name[bottom].get(key))
            out.append({"figure": key, "pair": f"{top} / {bottom}", "ratio": value,
                        "bound": bound})  # fmt: skip

    for tag in tags or [""]:
        for key, top, bottom, bound in FANOUT_RATIOS:
            add(key, _tagged(top, tag), _tagged(bottom, tag), bound)
    for tag in tags[1:]:
        for name in ("hub", "hub-redis"):
            add("busy_with_redis_cpu_s_per_1k", f"{name}@{tag}", f"{name}@{tags[0]}", None)
    return out


def _tagged(target: str, tag: str) -> str:
    """The name of ``target``'s run from root ``tag`` (baselines run once, untagged)."""
    return f"{target}@{tag}" if tag and target.startswith("hub") else target


def fanout_table(summaries: list[dict[str, Any]]) -> str:
    """A markdown table of the fan-out figures, one row per target, and its status."""
    head = [title for title, _ in FANOUT_COLUMNS] + ["p50 ms", "p99 ms", "status"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [str(s.get(key, "-")) for _, key in FANOUT_COLUMNS]
        lat = s.get("latency_ms") or {}
        cells += [str(lat.get("p50", "-")), str(lat.get("p99", "-")), s["status"]]
        rows.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(rows)


def fanout_ratio_lines(ratios: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['pair']}: {r['figure']} x{r['ratio']}" + (f" ({r['bound']})" if r["bound"] else "")
        for r in ratios
    )


REDIS_NODE_COLUMNS = (
    ("node", "label"), ("CPU s", "cpu_s"), ("CPU s / 1k", "cpu_s_per_1k"),
    ("cmds / patch", "commands_per_patch"), ("client bytes / patch", "net_bytes_per_patch"),
    ("repl bytes / patch", "repl_out_bytes_per_patch"),
    ("bus msgs / patch", "bus_messages_per_patch"), ("shard channels", "shard_channels"),
    ("keys", "keys"),
)  # fmt: skip
REDIS_TOTAL_COLUMNS = (
    ("target", "target"), ("Redis processes", "redis_processes"),
    ("Redis CPU s / 1k", "redis_cpu_s_per_1k"),
    ("hubs + Redis CPU s / 1k", "hubs_with_redis_cpu_s_per_1k"),
    ("the same over rest", "hubs_with_redis_cpu_s_over_rest_per_1k"),
    ("Redis rest CPU s / s", "redis_rest_cpu_s_per_s"),
    ("hub cmds / patch", "redis_hub_commands_per_patch"),
    ("replica cmds / patch", "redis_replica_commands_per_patch"),
    ("client bytes / patch", "redis_net_bytes_per_patch"),
    ("repl bytes / patch", "redis_repl_bytes_per_patch"),
)  # fmt: skip


def _markdown(columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> list[str]:
    out = ["| " + " | ".join(title for title, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(row.get(key, "-")) for _, key in columns) + " |" for row in rows]
    return out


def fanout_redis_nodes_table(summaries: list[dict[str, Any]]) -> str:
    """Every Redis process of every target with Redis (issue 21): the sums, then each
    node's share, and its most called commands; empty without such a target."""
    with_nodes = [s for s in summaries if s.get("redis_nodes")]
    if not with_nodes:
        return ""
    lines = _markdown(REDIS_TOTAL_COLUMNS, with_nodes)
    for s in with_nodes:
        lines += ["", f"{s['target']}, per Redis process:"]
        lines += _markdown(REDIS_NODE_COLUMNS, s["redis_nodes"])
        lines += [f"{row['label']}: {row['top_commands']}" for row in s["redis_nodes"]]
    return "\n".join(lines)


def fanout_redis_lines(summaries: list[dict[str, Any]]) -> str:
    """Redis commands per delivered patch and the most called, per target with Redis;
    and what the Redis figures are (the whole server's)."""
    lines = []
    for s in summaries:
        if not s.get("redis") or s.get("redis_commands") is None:
            continue
        bound = f" (issue 18: at most {COMMANDS_PER_PATCH_BOUND})" if s["kind"] == "hub" else ""
        top = ", ".join(f"{name} {n}" for name, n in s.get("redis_top_commands", {}).items())
        lines.append(
            f"{s['target']}: {s['redis_commands_per_patch']} Redis commands per delivered "
            f"patch{bound}, {s.get('redis_commands_per_patch_over_rest')} over the rest's "
            f"rate, of them {s.get('redis_script_calls_per_patch')} script calls (each "
            f"redis.call inside a script counts too); {s['redis_commands']} in all; "
            f"most called: {top}"
        )
    if lines:
        lines.append(
            "busy_with_redis: the busy node's CPU plus the Redis server's (INFO cpu); Redis "
            "figures are the whole server's (other databases and clients count too)"
        )
    return "\n".join(lines)
