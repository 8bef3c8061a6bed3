"""Canvas relay benchmark: a hub process, S sessions of one tutor and K students drawing.

Measures, over a fixed window, what the issue asks of coalescing: hub CPU
seconds per delivered patch, ``canvas:patches`` events per delivered patch,
and student-to-tutor latency (send to receipt at the tutor, durable commit
included). Runs the hub with each flush interval given, one after another,
on the same load, so the figures compare within one run:

    python -m loadtest.canvas_relay --sessions 20 --students 5 --rate 10 \\
        --seconds 10 --flush 0 --flush 0.02

Every loop is bounded by ``--seconds``; all traffic stays on 127.0.0.1.
The clients run in this process; its own CPU time is reported so a reader
can tell whether the generator, not the hub, was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from realtime.config import Settings
from realtime.identity import Role, mint_token
from tests.processes import ROOT, start_hub

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Result:
    hub_root: str
    flush_interval_s: float
    sessions: int
    students_per_session: int
    rate_hz: float
    seconds: float
    sent: int
    acked: int
    delivered: int
    staff_events: int
    hub_cpu_s: float
    generator_cpu_s: float
    patches_per_hub_cpu_s: float
    patches_per_event: float
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_max: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, flush: float, workdir: Path, root: Path) -> Result:
    secret = f"bench-{secrets.token_hex(16)}"
    hub = start_hub(
        workdir,
        secret,
        settings={
            "HUB_CANVAS_FLUSH_INTERVAL_S": str(flush),
            "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench-{flush}-{root.name}.db",
            "HUB_SOCKET_EVENTS_PER_S": "1000",
            "HUB_REST_REQUESTS_PER_S": "10000",
            "HUB_REST_REQUEST_BURST": "10000",
            "HUB_LOG_LEVEL": "WARNING",
        },
        name=f"bench-{flush}",
        root=root,
    )
    settings = Settings(jwt_secret=secret)
    sent = acked = 0
    latencies: list[float] = []
    delivered = staff_events = 0
    clients: list[socketio.AsyncClient] = []
    try:
        sessions = []
        async with aiohttp.ClientSession() as http:
            for s in range(args.sessions):
                tutor = f"tutor-{s}"
                headers = {
                    "Authorization": "Bearer "
                    + mint_token(settings, sub=tutor, role=Role.TUTOR, center="bench")
                }
                body = {
                    "title": f"bench {s}",
                    "tutor_id": tutor,
                    "starts_at": "2026-11-22T10:00:00Z",
                    "ends_at": "2026-11-22T11:00:00Z",
                }
                async with http.post(f"{hub.url}/api/v1/sessions", json=body, headers=headers) as r:
                    session_id = (await r.json())["data"]["id"]
                for k in range(args.students):
                    async with http.post(
                        f"{hub.url}/api/v1/sessions/{session_id}/enrollments",
                        json={"student_id": f"s{s}-{k}"},
                        headers=headers,
                    ) as r:
                        assert r.status == 201, await r.text()
                sessions.append((session_id, tutor))

        measuring = False

        async def connect(sub: str, role: Role) -> socketio.AsyncClient:
            client = socketio.AsyncClient(reconnection=False)
            token = mint_token(settings, sub=sub, role=role, center="bench", ttl_s=3600)
            await client.connect(hub.url, auth={"token": token}, transports=["websocket"])
            clients.append(client)
            return client

        for session_id, tutor in sessions:
            staff = await connect(tutor, Role.TUTOR)

            def on_patches(data: dict[str, Any]) -> None:
                nonlocal delivered, staff_events
                if not measuring:
                    return
                now = time.perf_counter()
                staff_events += 1
                for item in data["items"]:
                    delivered += 1
                    sent_at = item["ops"][0]["value"].get("t") if item["ops"] else None
                    if sent_at is not None:
                        latencies.append((now - sent_at) * 1000)

            staff.on("canvas:patches", on_patches)
            await staff.call("session:join", {"session_id": session_id})

        students = []
        for s, (session_id, _) in enumerate(sessions):
            for k in range(args.students):
                client = await connect(f"s{s}-{k}", Role.STUDENT)
                await client.call("session:join", {"session_id": session_id})
                students.append((client, session_id))

        deadline = time.perf_counter() + args.seconds
        period = 1.0 / args.rate
        points = [[i, i] for i in range(20)]

        async def draw(client: socketio.AsyncClient, session_id: str, offset: float) -> None:
            nonlocal sent, acked
            await asyncio.sleep(offset)
            n = 0
            next_at = time.perf_counter()
            while time.perf_counter() < deadline:
                value = {"type": "stroke", "points": points, "t": time.perf_counter()}
                sent += 1
                ack = await client.call(
                    "canvas:patch",
                    {
                        "session_id": session_id,
                        "ops": [{"op": "add", "path": f"/elements/e{n % 50}", "value": value}],
                    },
                    timeout=10,
                )
                acked += bool(ack.get("ok"))
                n += 1
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

        measuring = True
        hub_cpu, own_cpu = cpu_seconds(hub.process.pid), own_cpu_seconds()
        await asyncio.gather(
            *(draw(c, sid, i * period / len(students)) for i, (c, sid) in enumerate(students))
        )
        await asyncio.sleep(0.5)  # let the last relays land
        measuring = False
        hub_cpu = cpu_seconds(hub.process.pid) - hub_cpu
        own_cpu = own_cpu_seconds() - own_cpu
    finally:
        for client in clients:
            await client.disconnect()
        hub.stop()
    return Result(
        hub_root=str(root),
        flush_interval_s=flush,
        sessions=args.sessions,
        students_per_session=args.students,
        rate_hz=args.rate,
        seconds=args.seconds,
        sent=sent,
        acked=acked,
        delivered=delivered,
        staff_events=staff_events,
        hub_cpu_s=round(hub_cpu, 2),
        generator_cpu_s=round(own_cpu, 2),
        patches_per_hub_cpu_s=round(delivered / hub_cpu, 1) if hub_cpu else float("nan"),
        patches_per_event=round(delivered / staff_events, 2) if staff_events else float("nan"),
        latency_ms_p50=round(statistics.median(latencies), 1) if latencies else float("nan"),
        latency_ms_p99=round(percentile(latencies, 0.99), 1),
        latency_ms_max=round(max(latencies), 1) if latencies else float("nan"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--students", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10.0, help="patches per student per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flush", type=float, action="append", help="flush intervals to compare")
    parser.add_argument(
        "--root",
        type=Path,
        action="append",
        help="checkouts to run the hub from, for before/after ratios in one run (default: here)",
    )
    args = parser.parse_args()
    if not 0 < args.seconds <= 300:
        sys.exit("--seconds must be in (0, 300]")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for root in args.root or [ROOT]:
            for flush in args.flush or [0.0, 0.02]:
                results.append(asyncio.run(run(args, flush, Path(tmp), root.resolve())))
    print(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
