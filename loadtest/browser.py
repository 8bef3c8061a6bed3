"""The tutor's control center in a real headless Chromium while N students draw (issue 17).

One hub process (``procs.start_hub``), one session of N students created over
REST, the tutor page (``/tutor?session=<id>#token=<jwt>``) at 1280x800 in the
system's Chromium (Playwright), and N stock python-socketio clients drawing as a
pen does: a stroke is an ``add`` of a new element, then one patch per pointer-move
batch (every ``interval_ms``) that appends the batch's points to it; strokes of
about ``STROKE_PATCHES`` patches with short pauses between them.

Measured in the page: frame intervals (``requestAnimationFrame``), long tasks
(``PerformanceObserver('longtask')``), JS heap at the start and the end
(``performance.memory``, precise with ``--enable-precise-memory-info``), and
stroke-to-screen latency. Each patch also sets the element's ``color`` to its send
time (epoch ms modulo 2**24 as ``#rrggbb``), which the tile's ``<path fill>``
shows: a MutationObserver notes ``Date.now()`` when a node with that fill is
inserted, and a patch's latency is the first such node that includes it (same
machine, same wall clock). In the end every tile's document is compared with the
hub's stored one (REST), and the hub's and Chromium's CPU seconds are read from
``/proc`` (the renderers found among this process's descendants).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from playwright.async_api import Page, ViewportSize, async_playwright

from loadtest.procs import ROOT, TargetProcess, cpu_seconds, own_cpu_seconds, start_hub
from loadtest.report import percentiles
from loadtest.sessions import SessionPlan, Tokens, create_sessions
from realtime.base.identity import Role

CHROMIUM = "/usr/bin/chromium"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
STROKE_PATCHES = 20
POINTS_PER_PATCH = 3  # a pen's pointer moves in 50 ms, at 60 events a second
PAUSE_S = (0.2, 0.6)  # between strokes
BOARD = (1600, 1000)
COLOR_MOD = 1 << 24
OPEN_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 30.0
SETTLE_POLL_S = 0.1
ACK_TIMEOUT_S = 10.0
TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline", "v8"]
SMOOTH = {"frame_p95_ms": 33.0, "frames_over_50ms_share": 0.01, "latency_p99_ms": 100.0}

# Installed in the page before the students start: what the summary reads back.
PROBE = """
() => {
  const probe = { frames: [], longtasks: [], seen: [], heapStart: null };
  const mem = () => (performance.memory ? performance.memory.usedJSHeapSize : null);
  probe.heapStart = mem();
  let last = null;
  probe.running = true;
  const frame = (t) => {
    if (last !== null) probe.frames.push(t - last);
    last = t;
    if (probe.running) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  probe.longObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) probe.longtasks.push([e.startTime, e.duration]);
  });
  probe.longObserver.observe({ type: "longtask" });
  const known = new WeakSet();
  probe.mutations = new MutationObserver((records) => {
    const now = Date.now();
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (known.has(n) || !n.dataset || !n.dataset.id) continue;
        known.add(n);
        const fill = n.getAttribute("fill");
        if (fill) probe.seen.push([n.dataset.id, fill, now]);
      }
    }
  });
  probe.mutations.observe(document.querySelector("#tiles"), { childList: true, subtree: true });
  probe.stop = () => {
    probe.running = false;
    probe.longObserver.disconnect();
    probe.mutations.disconnect();
    return { frames: probe.frames, longtasks: probe.longtasks, seen: probe.seen,
             heapStart: probe.heapStart, heapEnd: mem() };
  };
  window.__probe = probe;
}
"""


@dataclass(frozen=True)
class BrowserConfig:
    students: int = 12
    seconds: float = 30.0
    interval_ms: float = 50.0
    database: str = "sqlite"
    seed: int = 0
    profile: Path | None = None  # a CPU profile of the page (.cpuprofile), read by DevTools
    trace: Path | None = None  # a Chrome trace of the run (chrome://tracing, Perfetto)


@dataclass(eq=False)
class Pen:
    """One student drawing on a stock python-socketio client; what it sent, when."""

    user_id: str
    session_id: str
    sio: socketio.AsyncClient
    rng: random.Random
    sent: int = 0
    acked: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    ack_ms: list[float] = field(default_factory=list)
    # element id -> [(send time in epoch ms, its color)], in order
    patches: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def ack(self, sent_at: float, answer: Any) -> None:
        if isinstance(answer, dict) and answer.get("ok"):
            self.acked += 1
            self.ack_ms.append((time.perf_counter() - sent_at) * 1000)
        else:
            error = answer.get("error") if isinstance(answer, dict) else None
            code = str(error.get("code")) if isinstance(error, dict) else repr(answer)[:40]
            self.refused[code] = self.refused.get(code, 0) + 1

    async def draw(self, end_at: float, interval_s: float) -> None:
        strokes = 0
        while time.monotonic() < end_at:
            element = f"{self.user_id}-{strokes}"
            strokes += 1
            x, y = self.rng.uniform(100, BOARD[0] - 100), self.rng.uniform(100, BOARD[1] - 100)
            length = self.rng.randint(STROKE_PATCHES - 4, STROKE_PATCHES + 4)
            next_at = time.monotonic()
            for k in range(length):
                if time.monotonic() >= end_at:
                    break
                points = []
                for _ in range(POINTS_PER_PATCH):
                    x = min(BOARD[0] - 10, max(10, x + self.rng.uniform(-12, 12)))
                    y = min(BOARD[1] - 10, max(10, y + self.rng.uniform(-8, 8)))
                    points.append([round(x, 1), round(y, 1)])
                await self._send(element, k == 0, points)
                next_at += interval_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            pause = self.rng.uniform(*PAUSE_S)
            await asyncio.sleep(min(pause, max(0.0, end_at - time.monotonic())))

    async def _send(self, element: str, first: bool, points: list[list[float]]) -> None:
        sent_ms = int(time.time() * 1000)
        color = f"#{sent_ms % COLOR_MOD:06x}"
        path = f"/elements/{element}"
        if first:
            value = {"type": "stroke", "points": points, "color": color, "width": 4, "z": 1}
            ops: list[dict[str, Any]] = [{"op": "add", "path": path, "value": value}]
        else:
            ops = [{"op": "add", "path": f"{path}/points/-", "value": p} for p in points]
            ops.append({"op": "replace", "path": f"{path}/color", "value": color})
        self.patches.setdefault(element, []).append((sent_ms, color))
        self.sent += 1
        payload = {"session_id": self.session_id, "ops": ops, "client_ref": self.sent}
        sent_at = time.perf_counter()
        await self.sio.emit("canvas:patch", payload, callback=lambda a: self.ack(sent_at, a))


def latencies(
    pens: list[Pen], seen: list[list[Any]]
) -> tuple[list[float], int, list[tuple[int, float]]]:
    """Each patch's stroke-to-screen ms: the first node of its element whose color is
    this patch's or a later one's (patches apply in order); how many never showed; and
    (send time in epoch ms, latency) pairs."""
    shown: dict[str, list[tuple[str, int]]] = {}
    for element, fill, at in seen:
        shown.setdefault(element, []).append((fill, at))
    out: list[float] = []
    pairs: list[tuple[int, float]] = []
    missing = 0
    for pen in pens:
        for element, sends in pen.patches.items():
            index = {color: k for k, (_, color) in enumerate(sends)}
            covered = [(index[fill], at) for fill, at in shown.get(element, []) if fill in index]
            for k, (sent_ms, _) in enumerate(sends):
                first = min((at for upto, at in covered if upto >= k), default=None)
                if first is None:
                    missing += 1
                else:
                    out.append(first - sent_ms)
                    pairs.append((sent_ms, first - sent_ms))
    return out, missing, pairs


def by_window(pairs: list[tuple[int, float]], window_s: float) -> list[float]:
    """The p99 latency of the patches sent in each window since the first send."""
    if not pairs:
        return []
    start = min(at for at, _ in pairs)
    bins: dict[int, list[float]] = {}
    for at, ms in pairs:
        bins.setdefault(int((at - start) / 1000 / window_s), []).append(ms)
    return [percentiles(bins[k])["p99"] or 0.0 for k in sorted(bins)]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc's parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def chromium_cpu() -> dict[str, float]:
    """CPU seconds of this process's Chromium processes: renderers, and all of them."""
    renderer = total = 0.0
    for pid in descendants(os.getpid()):
        try:
            # A zygote's children rewrite their argv as one line: search the raw bytes.
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"chrom" not in Path(cmdline.split(b"\0")[0].split(b" ")[0].decode()).name.encode():
                continue
            cpu = cpu_seconds(pid)
        except (OSError, UnicodeDecodeError):
            continue
        total += cpu
        if b"--type=renderer" in cmdline:
            renderer += cpu
    return {"renderer": renderer, "all": total}


async def stored_documents(url: str, token: str, plan: SessionPlan) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        out = {}
        for student in plan.student_ids:
            path = f"{url}/api/v1/sessions/{plan.session_id}/canvases/{student}"
            async with http.get(path, headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"GET {path}: expected 200, got {resp.status}")
                out[student] = (await resp.json())["data"]["doc"]
        return out


def same_document(shown: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Equal but for sections the hub leaves out when they are empty."""

    def sections(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (doc or {}).items() if v not in ({}, None)}

    return sections(shown) == sections(stored)


async def run_browser(
    config: BrowserConfig, workdir: Path, root: Path = ROOT, label: str = "hub",
    hub_env: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One run against a fresh hub from checkout ``root`` (which also serves ``web/``)."""
    env = dict(hub_env or {})
    if config.database != "sqlite":
        env["HUB_DATABASE_URL"] = config.database
    target = start_hub(workdir, root=root, extra_env=env, label=label.replace("/", "_"))
    try:
        summary = await _drive(config, target)
    finally:
        target.stop()
    summary.update({"target": label, "root": str(root), "exit_code": target.exit_code,
                    "log_problems": target.log_problems()})  # fmt: skip
    return summary


async def _drive(config: BrowserConfig, target: TargetProcess) -> dict[str, Any]:
    [plan] = await create_sessions(target.url, target.secret, 1, config.students)
    tokens = Tokens(target.secret)
    tutor_token = tokens(plan.tutor_id, Role.TUTOR)
    pens: list[Pen] = []
    console: list[str] = []
    try:
        for k, student in enumerate(plan.student_ids):
            sio = socketio.AsyncClient(reconnection=False)
            pens.append(Pen(student, plan.session_id, sio, random.Random(f"{config.seed}-{k}")))
            await sio.connect(target.url, auth={"token": tokens(student, Role.STUDENT)},
                              transports=["websocket"], wait_timeout=10)  # fmt: skip
            answer = await sio.call("session:join", {"session_id": plan.session_id}, timeout=10)
            if not answer.get("ok"):
                raise RuntimeError(f"{student}: expected to join, got {answer}")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--enable-precise-memory-info"]
            )
            try:
                page = await (await browser.new_context(viewport=VIEWPORT)).new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                return await _measure(config, target, plan, tutor_token, pens, page, console)
            finally:
                await browser.close()
    finally:
        await asyncio.gather(*(p.sio.disconnect() for p in pens), return_exceptions=True)


async def _measure(
    config: BrowserConfig, target: TargetProcess, plan: SessionPlan, tutor_token: str,
    pens: list[Pen], page: Page, console: list[str],
) -> dict[str, Any]:  # fmt: skip
    await page.goto(f"{target.url}/tutor?session={plan.session_id}#token={tutor_token}")
    await page.wait_for_function(
        """(n) => window.__control && window.__control.students().length === n
            && window.__control.students().every((id) => window.__control.tile(id).epoch)""",
        arg=config.students,
        timeout=OPEN_TIMEOUT_S * 1000,
    )
    cdp = None
    if config.profile:
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Profiler.enable")
        await cdp.send("Profiler.setSamplingInterval", {"interval": 200})
        await cdp.send("Profiler.start")
    if config.trace:
        await page.context.browser.start_tracing(page=page, path=config.trace,  # type: ignore[union-attr]
                                                 categories=TRACE_CATEGORIES)  # fmt: skip
    await page.evaluate(PROBE)
    hub_cpu, chrome_cpu, own_cpu = target.cpu_seconds(), chromium_cpu(), own_cpu_seconds()
    began = time.monotonic()
    end_at = began + config.seconds
    await asyncio.gather(*(p.draw(end_at, config.interval_ms / 1000) for p in pens))
    drawn_s = time.monotonic() - began
    settled = await _settle(page, pens)
    result = await page.evaluate("() => window.__probe.stop()")
    window_s = time.monotonic() - began
    hub_cpu = target.cpu_seconds() - hub_cpu
    chrome_after = chromium_cpu()
    own_cpu = own_cpu_seconds() - own_cpu
    if config.trace:
        await page.context.browser.stop_tracing()  # type: ignore[union-attr]
    if cdp is not None and config.profile:
        profile = (await cdp.send("Profiler.stop"))["profile"]
        config.profile.write_text(json.dumps(profile))
    stored = await stored_documents(target.url, tutor_token, plan)
    equal = 0
    for student in plan.student_ids:
        shown = await page.evaluate("(id) => window.__control.tile(id).document", student)
        equal += same_document(shown, stored[student])
    frames = result["frames"]
    longtasks = result["longtasks"]
    lat, missing, lat_at = latencies(pens, result["seen"])
    sent = sum(p.sent for p in pens)
    mib = 1 / (1024 * 1024)
    frame_p = percentiles(frames)
    over_50 = sum(f > 50 for f in frames) / len(frames) if frames else None
    lat_p = percentiles(lat)
    summary = {
        "students": config.students,
        "seconds": config.seconds,
        "interval_ms": config.interval_ms,
        "database": config.database.split("://")[0],
        "drawn_s": round(drawn_s, 2),
        "window_s": round(window_s, 2),
        "settled": settled,
        "sent": sent,
        "acked": sum(p.acked for p in pens),
        "refused": {k: v for p in pens for k, v in p.refused.items()},
        "strokes": sum(len(p.patches) for p in pens),
        "frames": len(frames),
        "frame_ms": frame_p,
        "frames_over_33ms_share": round(sum(f > 33 for f in frames) / len(frames), 4)
        if frames
        else None,
        "frames_over_50ms_share": round(over_50, 4) if over_50 is not None else None,
        "longtasks": {"count": len(longtasks),
                      "total_ms": round(sum(d for _, d in longtasks), 1),
                      "longest_ms": round(max((d for _, d in longtasks), default=0), 1)},
        "latency_ms": lat_p,
        "latency_missing": missing,
        "ack_ms": percentiles([x for p in pens for x in p.ack_ms]),
        "latency_p99_by_5s": by_window(lat_at, 5.0),
        "heap_mib": {"start": round(result["heapStart"] * mib, 1) if result["heapStart"] else None,
                     "end": round(result["heapEnd"] * mib, 1) if result["heapEnd"] else None},
        "tiles_equal_stored": equal,
        "hub_cpu_s": round(hub_cpu, 2),
        "chromium_renderer_cpu_s": round(chrome_after["renderer"] - chrome_cpu["renderer"], 2),
        "chromium_cpu_s": round(chrome_after["all"] - chrome_cpu["all"], 2),
        "generator_cpu_s": round(own_cpu, 2),
        "console_problems": [line for line in console if line.startswith(("error", "pageerror"))],
    }  # fmt: skip
    summary["smooth"] = bool(
        frame_p["p95"] is not None
        and frame_p["p95"] <= SMOOTH["frame_p95_ms"]
        and over_50 is not None
        and over_50 < SMOOTH["frames_over_50ms_share"]
        and lat_p["p99"] is not None
        and lat_p["p99"] <= SMOOTH["latency_p99_ms"]
        and not missing
        and equal == config.students
    )
    return summary


async def _settle(page: Page, pens: list[Pen]) -> bool:
    """Wait until every patch is acked and every tile holds its student's last seq."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(p.acked + sum(p.refused.values()) == p.sent for p in pens):
            seqs = await page.evaluate(
                "() => window.__control.students().map((id) => window.__control.tile(id).seq)"
            )
            if sum(seqs) >= sum(p.acked for p in pens):
                return True
        await asyncio.sleep(SETTLE_POLL_S)
    return False


TABLE_COLUMNS = [
    ("target", "target"), ("students", "students"), ("sent", "sent"), ("frames", "frames"),
    ("frame p50", "frame_ms.p50"), ("frame p95", "frame_ms.p95"), ("frame p99", "frame_ms.p99"),
    ("frame max", "frame_ms.max"), (">33 ms", "frames_over_33ms_share"),
    (">50 ms", "frames_over_50ms_share"), ("long tasks", "longtasks.count"),
    ("long ms", "longtasks.total_ms"), ("longest", "longtasks.longest_ms"),
    ("lat p50", "latency_ms.p50"), ("lat p95", "latency_ms.p95"), ("lat p99", "latency_ms.p99"),
    ("lat max", "latency_ms.max"), ("heap MiB", "heap_mib"),
    ("tiles = stored", "tiles_equal_stored"),
    ("hub CPU s", "hub_cpu_s"), ("renderer CPU s", "chromium_renderer_cpu_s"),
    ("chromium CPU s", "chromium_cpu_s"), ("smooth", "smooth"),
]  # fmt: skip


def table(runs: list[dict[str, Any]]) -> str:
    """A markdown table, one row per run (frame and latency figures in ms)."""

    def cell(run: dict[str, Any], key: str) -> str:
        value: Any = run
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if key == "heap_mib" and isinstance(value, dict):
            return f"{value['start']} → {value['end']}"
        return str(value)

    head = [title for title, _ in TABLE_COLUMNS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows += ["| " + " | ".join(cell(r, k) for _, k in TABLE_COLUMNS) + " |" for r in runs]
    return "\n".join(rows)
