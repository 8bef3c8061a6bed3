"""``python -m loadtest <mode>``: load the hub (and a bare baseline relay) and report.

Modes (each target runs alone, in a fresh process, one after another):

    relay        S sessions of a tutor and K students; students draw at R patches/s
                 with pings, progress and help requests mixed in; tutors annotate
                 (how often: --ping-every, --progress-every, --help-every,
                 --annotate-every; fanout takes them too).
                 Latency, loss, order, hub CPU per delivered patch; latency p50/p99/max
                 and RSS per second; the hub's /metrics at the end (loop lag, canvas
                 bytes, commits); ratios against the like-for-like baseline and the
                 stock one (targets ``baseline``, ``baseline-stock``).
    connections  N idle joined students (sessions of K, plus their tutors);
                 the target's RSS before and after, per connection.
    storm        N students (sessions of K, plus tutors) drawing slowly all drop
                 at once and re-join with ``since``; recovery time, missed patches.
    hops         one canvas patch traced through the hub (in process): function hops
                 and package crossings from the student's emit to the tutor and the ack.
    fanout       the relay mix on node 1 of two processes sharing a Redis, node 2 idle:
                 each node's CPU per 1,000 patches, for the stock AsyncRedisManager
                 and the hub, against one process alone (issue 5); Redis CPU
                 added to the busy node, Redis commands per patch (issue 18).
    tenancy      3 centers, 9 sessions, every role, real clients on one hub or on
                 two sharing Redis: at least --events client -> hub events; every
                 event received judged against docs/protocol.md (who may see
                 what), violations and missing deliveries by kind (issue 19).
    browser      the tutor's control center in headless Chromium while N students
                 draw: frame intervals, long tasks, stroke-to-screen latency, heap,
                 tiles against the stored documents, hub and Chromium CPU (issue 17).
    rollout      a rolling restart of N Redis-shared hubs behind nginx (configured
                 from docs/deploy/nginx.conf) while students draw: each hub in turn
                 SIGTERMed and started again; exit codes, stop times, patches lost,
                 doubled or out of order, recovery times (docs/reliability.md).

    python -m loadtest relay --sessions 50 --students 5 --rate 10 --seconds 20 \\
        --target hub --target baseline --target baseline-stock --plot relay.png --json relay.json
    python -m loadtest relay --generator node --pin --sessions 100 --target hub --target baseline
    python -m loadtest connections --connections 5000
    python -m loadtest storm --students 1000
    python -m loadtest hops --root /tmp/before --root .
    python -m loadtest fanout --sessions 20 --students 5 --rate 10 --seconds 15
    python -m loadtest tenancy --events 100000
    python -m loadtest tenancy --events 100000 --hubs 2 --redis-url redis://127.0.0.1:6379/10
    python -m loadtest browser --students 12 --seconds 30 --root /tmp/before --root .
    python -m loadtest rollout --hubs 2 --sessions 5 --students 5 --json rollout.json

The relay's generator (``--generator``): ``python`` (the default) is ``--workers``
processes of the lean wire client (``loadtest/wire.py``), which share the cores
with the target; ``node`` is ONE Node.js process on the stock ``socket.io-client``
(``loadtest/node/relay.mjs``, from ``tests/js/node_modules``: ``make`` installs it),
pinned to one CPU, running the same mix and reporting the same figures
(``loadtest/node_generator.py``). Either way each run reports the generator's CPU
seconds and its busiest process's share of a core (``generator_cpu_s``,
``generator_cpu_share_max``; Node also how late its timers ran): a share near 1.0
means the generator set the pace, not the target. ``--pin`` runs the target alone
on the first CPU and the generator on the others. The stock client offers
permessage-deflate (as browsers do) and the hub then compresses every frame it
sends; the Python client does not: ``--no-deflate`` makes Node's like it.

The JSON summary goes to stdout (and ``--json FILE``), a readable table to
stderr; ``--record`` appends the table to ``docs/benchmarks.md``. Every loop is
bounded; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtest import browser, fanout, report, rollout_cli, scenario, soak
from loadtest import tenancy_run as tenancy
from loadtest.procs import ROOT, raise_nofile_limit
from loadtest.runner import TARGETS, run_connections, run_relay, run_storm, target_specs
from loadtest.storm import DROP_KINDS

MAX_SECONDS = 300.0
MAX_TENANCY_SECONDS = 1800.0
MAX_TENANCY_EVENTS = 2_000_000
HOPS_TIMEOUT_S = 120.0
MAX_CLIENTS = 20_000
MAX_BROWSER_STUDENTS = 100
GENERATORS = ("python", "node")
CONNECTIONS_COLUMNS = [
    "target", "clients", "joined", "connect_s", "hub_rss_mib_before", "hub_rss_mib_after",
    "hub_rss_kib_per_connection", "hub_cpu_s", "hub_idle_cpu_s_per_s",
    "hub_idle_cores_per_1k_connections", "generator_cpu_s",
]  # fmt: skip
STORM_COLUMNS = [
    "target", "clients", "dropped_total", "recovered", "recovery_s", "join_answers", "sent",
    "acked", "failed", "missed", "acked_missing", "hub_cpu_s", "generator_cpu_s",
]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest", description=__doc__.split("\n\n")[0]
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    relay = modes.add_parser("relay", help="the relay mix; hub against baseline")
    relay.add_argument("--sessions", type=int, default=20)
    relay.add_argument("--students", type=int, default=5, help="students per session")
    relay.add_argument("--rate", type=float, default=10.0, help="patches per student per second")
    relay.add_argument("--seconds", type=float, default=10.0, help=f"at most {MAX_SECONDS:g}")
    relay.add_argument(
        "--target",
        choices=TARGETS,
        action="append",
        help="repeatable; baseline: like-for-like with the hub, baseline-stock: stock",
    )
    _mix_options(relay)
    relay.add_argument("--growing", action="store_true",
                       help="every stroke a new element (canvases grow)")  # fmt: skip
    relay.add_argument("--plot", type=Path, help="PNG: latency CDF, rate, p99/max, RSS per s")
    relay.add_argument(
        "--generator",
        choices=GENERATORS,
        default="python",
        help="python: --workers processes of the lean wire client; node: one Node process "
        "on the stock socket.io-client, pinned to one core (tests/js/node_modules)",
    )
    relay.add_argument("--no-deflate", action="store_true",
                       help="node: offer no permessage-deflate (as the Python client)")  # fmt: skip
    relay.add_argument(
        "--pin",
        action="store_true",
        help="the target alone on the first CPU, the generator on the rest",
    )
    soaking = modes.add_parser(
        "soak", help="the relay mix for minutes; RSS, open fds and loop lag over time"
    )
    soaking.add_argument("--sessions", type=int, default=10)
    soaking.add_argument("--students", type=int, default=5, help="students per session")
    soaking.add_argument("--rate", type=float, default=10.0, help="patches per student per second")
    soaking.add_argument("--minutes", type=float, default=30, help=f"at most {soak.MAX_MINUTES}")
    soaking.add_argument("--warm-up", type=float, default=soak.WARM_UP_MIN,
                         help="minutes left out of the verdicts")  # fmt: skip
    soaking.add_argument("--generator", choices=GENERATORS, default="node")
    conns = modes.add_parser("connections", help="idle joined connections; RSS per connection")
    conns.add_argument("--connections", type=int, default=1000, help="student connections")
    conns.add_argument("--per-session", type=int, default=5, help="students per session")
    conns.add_argument("--target", choices=TARGETS, action="append")
    conns.add_argument("--hold-seconds", type=float, default=0.0,
                       help="then everyone stays joined and idle this long: the hub's "
                       "CPU meanwhile (0: not)")  # fmt: skip
    storm = modes.add_parser("storm", help="everyone drops at once and re-joins with since")
    storm.add_argument("--students", type=int, default=1000)
    storm.add_argument("--per-session", type=int, default=5, help="students per session")
    storm.add_argument("--rate", type=float, default=0.2, help="patches per student per second")
    storm.add_argument("--drop-after", type=float, default=3.0, help="seconds of drawing first")
    storm.add_argument("--drop", choices=DROP_KINDS, default="all", help="who is dropped")
    fan = modes.add_parser("fanout", help="two nodes on one Redis, load on one; idle node's CPU")
    fan.add_argument("--sessions", type=int, default=20)
    fan.add_argument("--students", type=int, default=5, help="students per session")
    fan.add_argument("--rate", type=float, default=10.0, help="patches per student per second")
    fan.add_argument("--seconds", type=float, default=15.0, help=f"at most {MAX_SECONDS:g}")
    fan.add_argument("--target", choices=fanout.TARGETS, action="append",
                     help="repeatable; default: all seven, in this order")  # fmt: skip
    _mix_options(fan)
    fan.add_argument("--rest-seconds", type=float, default=fanout.REST_S,
                     help="node 2's CPU at rest is read this long first (0: not)")  # fmt: skip
    fan.add_argument(
        "--tutors-on-node-2",
        action="store_true",
        help="the tutors connect to node 2 (their students stay on node 1): every "
        "annotation is written from the other node, and every patch crosses Redis "
        "to reach its tutor; node 2's figures are then no longer an idle node's",
    )
    fan.add_argument("--redis-url", default=fanout.DEFAULT_REDIS_URL,
                     help="flushed before every target; never the tests' db 15")  # fmt: skip
    hops = modes.add_parser("hops", help="one patch's function hops and package crossings")
    hops.add_argument("--root", type=Path, action="append",
                      help="checkout to trace (repeat for before/after)")  # fmt: skip
    hops.add_argument("--json", type=Path, help="also write the JSON summary here")
    for mode in (relay, soaking, conns, storm, fan):
        _common_options(mode)
    ten = modes.add_parser("tenancy", help="centers, sessions and roles at once; who saw what")
    ten.add_argument("--events", type=int, default=100_000, help="client -> hub events to send")
    ten.add_argument("--seconds", type=float, default=MAX_TENANCY_SECONDS,
                     help=f"sending stops by then (at most {MAX_TENANCY_SECONDS:g})")  # fmt: skip
    ten.add_argument("--centers", type=int, default=3)
    ten.add_argument("--hubs", type=int, choices=(1, 2), default=1)
    ten.add_argument("--redis-url", help="with --hubs 2: redis://127.0.0.1:6379/9 or /10 (flushed)")
    ten.add_argument("--root", type=Path, help="checkout to run the hubs from")
    ten.add_argument("--hub-env", action="append", default=[], metavar="KEY=VALUE")
    ten.add_argument("--json", type=Path, help="also write the JSON summary here")
    page = modes.add_parser("browser", help="the control center in Chromium, N students drawing")
    page.add_argument("--students", type=int, default=12)
    page.add_argument("--seconds", type=float, default=30.0, help=f"at most {MAX_SECONDS:g}")
    page.add_argument("--interval-ms", type=float, default=50.0,
                      help="each student's patch interval while drawing")  # fmt: skip
    page.add_argument("--database", default="sqlite",
                      help="sqlite (a fresh file) or a URL the hub may migrate")  # fmt: skip
    page.add_argument("--root", type=Path, action="append",
                      help="checkout serving the hub and web/ (repeat: before/after)")  # fmt: skip
    page.add_argument("--profile", type=Path,
                      help="the page's CPU profile (.cpuprofile; the last root's)")  # fmt: skip
    page.add_argument("--trace", type=Path, help="a Chrome trace of the run (the last root's)")
    page.add_argument("--json", type=Path, help="also write the JSON summary here")
    page.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    rollout_cli.options(modes)
    args = parser.parse_args(argv)
    _check(parser, args)
    return args


def _hops(roots: list[Path], json_path: Path | None) -> dict[str, Any]:
    """``loadtest/hops.py`` run in each checkout, with that checkout first on the path."""
    script = Path(__file__).with_name("hops.py")
    runs = []
    for root in roots:
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=HOPS_TIMEOUT_S,
            check=True,
        )
        run = json.loads(done.stdout)
        runs.append(run)
        print(
            f"{root}: {run['hops']} hops, {run['crossings']} crossings of a package "
            f"({run['crossings_top_level']} of a top-level folder), "
            f"calls up the layers: {run['upward_calls']}, "
            f"{run['entries_from_loop']} entries from the event loop",
            file=sys.stderr,
        )
    out = {"mode": "hops", "runs": runs}
    print(json.dumps(out, indent=2))
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2))
    return out


def _mix_options(parser: argparse.ArgumentParser) -> None:
    """How often the students and tutors do what besides drawing (seconds between)."""
    defaults = scenario.EventMix()
    for name, what in (  # scenario.mix_of reads them
        ("ping", "each student's presence:ping"),
        ("progress", "each student's exercise:progress"),
        ("help", "each student's help:request (cancelled a second later)"),
        ("annotate", "each tutor's annotation"),
    ):
        default = getattr(defaults, f"{name}_every_s")
        parser.add_argument(f"--{name}-every", type=float, default=default, metavar="S",
                            help=f"seconds between {what} (default {default:g})")  # fmt: skip


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="generator processes (whole sessions each)")  # fmt: skip
    parser.add_argument("--root", type=Path, action="append",
                        help="checkout to run the hub from (repeat for before/after)")  # fmt: skip
    parser.add_argument("--hub-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra HUB_* setting for the hub (repeatable)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    parser.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.mode == "hops":
        return
    for name in ("ping", "progress", "help", "annotate"):
        if getattr(args, f"{name}_every", 1.0) <= 0:
            parser.error(f"--{name}-every must be above 0 (seconds between)")
    if args.mode == "rollout":
        rollout_cli.check(parser, args, MAX_CLIENTS)
        return
    if args.mode == "tenancy":
        if not 0 < args.seconds <= MAX_TENANCY_SECONDS:
            parser.error(f"--seconds must be in (0, {MAX_TENANCY_SECONDS:g}]")
        if not 1 <= args.events <= MAX_TENANCY_EVENTS:
            parser.error(f"--events must be in [1, {MAX_TENANCY_EVENTS}]")
        if not 2 <= args.centers <= 10:
            parser.error("--centers must be in [2, 10]")
        if (args.hubs > 1) != bool(args.redis_url):
            parser.error("--hubs 2 needs --redis-url, and --redis-url needs --hubs 2")
        if args.redis_url:
            try:
                tenancy.check_redis_url(args.redis_url)
            except ValueError as exc:
                parser.error(str(exc))
        for item in args.hub_env:
            if "=" not in item or not item.startswith("HUB_"):
                parser.error(f"--hub-env expects HUB_KEY=VALUE, got {item!r}")
        return
    if args.mode == "browser":
        if not 0 < args.seconds <= MAX_SECONDS:
            parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
        if not 1 <= args.students <= MAX_BROWSER_STUDENTS:
            parser.error(f"expected 1 to {MAX_BROWSER_STUDENTS} students, got {args.students}")
        if args.interval_ms < 10:
            parser.error("--interval-ms must be at least 10")
        return
    if args.mode == "soak":
        if not 0 <= args.warm_up < args.minutes <= soak.MAX_MINUTES:
            parser.error(f"expected 0 <= --warm-up < --minutes <= {soak.MAX_MINUTES}")
        # The relay run underneath: the hub alone, one Node process or Python workers.
        args.seconds, args.target = args.minutes * 60.0, ["hub"]
        args.growing, args.plot, args.no_deflate, args.pin = False, None, False, False
    elif getattr(args, "seconds", 1.0) <= 0 or getattr(args, "seconds", 1.0) > MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    if getattr(args, "rate", 1.0) <= 0:
        parser.error("--rate must be above 0")
    clients = getattr(args, "connections", 0) or getattr(args, "students", 0)
    if args.mode in ("relay", "fanout", "soak"):
        clients = args.sessions * (args.students + 1)
    if not 0 < clients <= MAX_CLIENTS:
        parser.error(f"expected 1 to {MAX_CLIENTS} clients, got {clients}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    for item in args.hub_env:
        if "=" not in item or not item.startswith("HUB_"):
            parser.error(f"--hub-env expects HUB_KEY=VALUE, got {item!r}")
    if args.mode == "connections" and not 0 <= args.hold_seconds <= MAX_SECONDS:
        parser.error(f"--hold-seconds must be in [0, {MAX_SECONDS:g}]")
    if args.mode == "fanout":
        if not 0 <= args.rest_seconds <= MAX_SECONDS:
            parser.error(f"--rest-seconds must be in [0, {MAX_SECONDS:g}]")
        try:
            fanout.check_redis_url(args.redis_url)
        except ValueError as exc:
            parser.error(str(exc))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the mode; the JSON summary (also printed)."""
    args = parse_args(argv)
    if args.mode == "hops":
        return _hops([r.resolve() for r in args.root or [ROOT]], args.json)
    if args.mode == "browser":
        return _browser(args, [r.resolve() for r in args.root or [ROOT]])
    if args.mode == "tenancy":
        return _tenancy(args)
    if args.mode == "rollout":
        return rollout_cli.run(args)
    raise_nofile_limit()
    hub_env = dict(item.split("=", 1) for item in args.hub_env)
    roots = [r.resolve() for r in args.root or [ROOT]]
    if args.mode == "fanout":
        return _fanout(args, roots, hub_env)
    kinds = getattr(args, "target", None) or ["hub"]
    specs = target_specs(kinds if args.mode != "storm" else ["hub"], roots)
    out: dict[str, Any] = {"mode": args.mode, "cpu_count": os.cpu_count(), "runs": []}
    raw = []
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        for spec in specs:
            workdir = Path(tmp) / f"run-{len(out['runs'])}"
            workdir.mkdir()
            if args.mode == "relay":
                summary, samples = run_relay(spec, args, workdir, hub_env)
                raw.append(samples)
            elif args.mode == "soak":
                summary, _ = run_relay(spec, args, workdir, hub_env, soak.SoakWindow)
                summary["soak"] = soak.summary(summary, args.warm_up)
            elif args.mode == "connections":
                summary = run_connections(spec, args, workdir, hub_env)
            else:
                summary = run_storm(spec, args, workdir, hub_env)
            out["runs"].append(summary)
    _report(args, out, raw)
    return out


def _fanout(args: argparse.Namespace, roots: list[Path], hub_env: dict[str, str]) -> dict[str, Any]:
    """Each target once; with several roots, each hub target once per root (named
    ``hub@1``, ``hub@2``, ...), interleaved so before and after meet the same noise."""
    out: dict[str, Any] = {"mode": "fanout", "cpu_count": os.cpu_count(),
                           "redis_url": args.redis_url, "runs": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        for name in args.target or fanout.TARGETS:
            target = fanout.fanout_target(name)
            tagged = len(roots) > 1 and target.kind == "hub"
            for index, root in enumerate(roots if tagged else roots[:1], start=1):
                workdir = Path(tmp) / f"run-{len(out['runs'])}"
                workdir.mkdir()
                run = replace(target, name=f"{name}@{index}") if tagged else target
                out["runs"].append(fanout.run_fanout(run, args, root, workdir, hub_env))
    _report(args, out, [])
    return out


def _tenancy(args: argparse.Namespace) -> dict[str, Any]:
    hub_env = dict(item.split("=", 1) for item in args.hub_env)
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        summary = tenancy.soak(
            Path(tmp), hubs=args.hubs, redis_url=args.redis_url, events=args.events,
            seconds=args.seconds, centers=args.centers, hub_env=hub_env,
            root=(args.root or ROOT).resolve(),
        )  # fmt: skip
    out: dict[str, Any] = {"mode": "tenancy", "cpu_count": os.cpu_count(), "runs": [summary]}
    text = json.dumps(out, indent=2)
    print(text)
    print(tenancy.table(summary), file=sys.stderr)
    if args.json:
        args.json.write_text(text + "\n")
    return out


def _browser(args: argparse.Namespace, roots: list[Path]) -> dict[str, Any]:
    """One run per checkout, back to back, each against a fresh hub."""
    config = browser.BrowserConfig(
        students=args.students, seconds=args.seconds, interval_ms=args.interval_ms,
        database=args.database, profile=args.profile, trace=args.trace,
    )  # fmt: skip
    out: dict[str, Any] = {"mode": "browser", "cpu_count": os.cpu_count(),
                           "smooth_when": browser.SMOOTH, "runs": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        for index, root in enumerate(roots, start=1):
            workdir = Path(tmp) / f"run-{index}"
            workdir.mkdir()
            label = "hub" if len(roots) == 1 else f"hub@{index}"
            out["runs"].append(asyncio.run(browser.run_browser(config, workdir, root, label)))
    _report(args, out, [])
    return out


def _report(args: argparse.Namespace, out: dict[str, Any], raw: list[dict[str, Any]]) -> None:
    table = _table(args.mode, out["runs"])
    if args.mode == "relay":
        out["ratios"] = report.relay_ratios(out["runs"])
        table += "\n\n" + report.ratio_lines(out["ratios"])
        generators = report.generator_lines(out["runs"])
        if generators:
            table += "\n\n" + generators
        metrics = report.hub_metrics_lines(out["runs"])
        if metrics:
            table += "\n\n" + metrics
        if args.plot:
            report.plot(args.plot, raw)
    if args.mode == "fanout":
        out["ratios"] = report.fanout_ratios(out["runs"])
        for lines in (report.fanout_ratio_lines(out["ratios"]),
                      report.fanout_redis_lines(out["runs"]),
                      report.fanout_redis_nodes_table(out["runs"])):  # fmt: skip
            if lines:
                table += "\n\n" + lines
    text = json.dumps(out, indent=2)
    print(text)
    print(table, file=sys.stderr)
    if args.json:
        args.json.write_text(text + "\n")
    if args.record:
        report.record(f"`loadtest {args.mode}`", table)


def _table(mode: str, runs: list[dict[str, Any]]) -> str:
    if mode == "relay":
        return report.relay_table(runs)
    if mode == "soak":
        return soak.table(runs)
    if mode == "fanout":
        return report.fanout_table(runs)
    if mode == "browser":
        return browser.table(runs)
    if mode == "connections":
        keys = CONNECTIONS_COLUMNS
    else:
        keys = STORM_COLUMNS
    rows = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    rows += ["| " + " | ".join(str(run.get(k)) for k in keys) + " |" for run in runs]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
