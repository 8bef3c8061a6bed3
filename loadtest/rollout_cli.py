"""``python -m loadtest rollout``'s options, their checks, and the run that prints
the drill's table (``loadtest/rollout.py``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtest import fanout, rollout, rollout_nginx, rollout_report
from loadtest.procs import raise_nofile_limit

MAX_HUBS = 10
MAX_TIMEOUT_S = 1800.0


def options(modes: Any) -> None:
    roll = modes.add_parser("rollout", help="a rolling restart of the hubs behind nginx")
    roll.add_argument("--hubs", type=int, default=2)
    roll.add_argument("--sessions", type=int, default=5)
    roll.add_argument("--students", type=int, default=5, help="students per session")
    roll.add_argument("--rate", type=float, default=5.0, help="patches per student per second")
    roll.add_argument("--warm-up", type=float, default=5.0, help="seconds of drawing first")
    roll.add_argument("--pause", type=float, default=5.0,
                      help="seconds between a hub ready again and the next SIGTERM")  # fmt: skip
    roll.add_argument("--after", type=float, default=5.0, help="seconds of drawing after the roll")
    roll.add_argument("--timeout", type=float, default=180.0, help="the whole drill, at most")
    roll.add_argument("--redis-url", default=rollout.DEFAULT_REDIS_URL, help="flushed first")
    roll.add_argument("--database-url",
                      help="postgresql+asyncpg://... (a schema of the drill's own, dropped "
                      "after); default: a SQLite file in a temporary directory")  # fmt: skip
    roll.add_argument("--direct", action="store_true",
                      help="no nginx: clients connect to the hubs, round-robin")  # fmt: skip
    roll.add_argument("--nginx-conf", type=Path, default=rollout_nginx.DOCUMENTED_CONF,
                      help="the nginx config to drill (its upstream servers and listen "
                      "are replaced); default: docs/deploy/nginx.conf")  # fmt: skip
    roll.add_argument(
        "--kill", action="store_true", help="SIGKILL each hub, not SIGTERM: hubs that die"
    )
    roll.add_argument("--hub-env", action="append", default=[], metavar="KEY=VALUE")
    roll.add_argument("--json", type=Path, help="also write the JSON summary here")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace, max_clients: int) -> None:
    if not 1 <= args.hubs <= MAX_HUBS:
        parser.error(f"--hubs must be in [1, {MAX_HUBS}]")
    if not 0 < args.sessions * (args.students + 1) <= max_clients or args.students < 1:
        parser.error(f"expected 1 to {max_clients} clients and a student a session at least")
    if args.rate <= 0:
        parser.error("--rate must be above 0")
    if min(args.warm_up, args.pause, args.after) < 0:
        parser.error("--warm-up, --pause and --after must be at least 0")
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        parser.error(f"--timeout must be in (0, {MAX_TIMEOUT_S:g}]")
    if args.database_url and not args.database_url.startswith("postgresql+asyncpg://"):
        parser.error("--database-url must be a postgresql+asyncpg:// URL (or left out: SQLite)")
    try:
        fanout.check_redis_url(args.redis_url)
    except ValueError as exc:
        parser.error(str(exc))
    for item in args.hub_env:
        if "=" not in item or not item.startswith("HUB_"):
            parser.error(f"--hub-env expects HUB_KEY=VALUE, got {item!r}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The drill; its table on stdout, exit status 1 if it failed (2 without nginx)."""
    config = rollout.RolloutConfig(
        hubs=args.hubs, sessions=args.sessions, students=args.students, rate=args.rate,
        warm_up=args.warm_up, pause=args.pause, after=args.after, timeout=args.timeout,
        kill=args.kill,
        redis_url=args.redis_url, database_url=args.database_url, direct=args.direct,
        nginx_conf=args.nginx_conf.resolve(),
        hub_env=dict(item.split("=", 1) for item in args.hub_env),
    )  # fmt: skip
    raise_nofile_limit()
    try:
        with tempfile.TemporaryDirectory(prefix="loadtest-rollout-") as tmp:
            summary = rollout.run_rollout(config, Path(tmp))
    except rollout.NginxMissing as exc:
        print(f"rollout: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("rollout: interrupted; the hubs and nginx were stopped", file=sys.stderr)
        raise SystemExit(130) from None
    out: dict[str, Any] = {"mode": "rollout", "cpu_count": os.cpu_count(), "runs": [summary]}
    print(rollout_report.table(summary))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if summary["failures"]:
        raise SystemExit(1)
    return out
