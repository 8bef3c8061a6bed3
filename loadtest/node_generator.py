"""The relay mix from one Node.js process on the stock ``socket.io-client`` (``--generator node``).

The Python generator (``loadtest/workers.py``: a process per core, each a
``RelayWorker`` on the lean ``loadtest/wire.py`` client) shares the machine's
cores with the target; at 50 sessions and more it measures itself as much as
the hub. This runs the same mix (``loadtest/scenario.py``: its constants are
passed along, so the two cannot drift apart) in ``loadtest/node/relay.mjs``,
one Node process on the ``socket.io-client`` that ``tests/js`` installs,
pinned to one core (``sched_setaffinity``, as ``taskset`` does: the last core
this process may use; with ``--pin`` the target is alone on the first).

One difference from the Python client is the stock client's own: its
websockets offer permessage-deflate, as browsers' do, and the hub (aiohttp)
accepts, so it compresses every frame it sends them; the Python wire client
offers none. ``--no-deflate`` turns the offer off for a like-for-like run.

Python prepares: the sessions exist (``loadtest/sessions.py``) and every
member's token is minted here, written with the rest of the run into a JSON
file for Node. ``NodePool`` then steps Node as ``WorkerPool`` steps its workers
(ready, go, done, stop; one JSON line each way, see the script's header), and
Node's result has a worker's shape, ``cpu_s`` (its own CPU from go to done)
included, so the runner and the report need no special case.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from loadtest import members, scenario
from loadtest.procs import ROOT, cores
from loadtest.sessions import SessionPlan, Tokens
from loadtest.workers import READY_TIMEOUT_S, Result, WorkerError
from realtime.base.identity import Role

SCRIPT = Path(__file__).resolve().parent / "node" / "relay.mjs"
JS_DIR = ROOT / "tests" / "js"
# Node gives up by itself this long after its run should have ended (a soak runs for
# up to an hour: the bound follows the run's length).
HARD_TIMEOUT_MARGIN_S = READY_TIMEOUT_S + scenario.MAX_DRAIN_S + 300.0
STOP_TIMEOUT_S = 30.0
TICK_S = 0.5
STDERR_TAIL_CHARS = 3000


def node_executable() -> str:
    """``node`` on PATH, with ``tests/js/node_modules`` installed; else a clear error."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("--generator node needs `node` (Node.js 18+) on PATH")
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        raise RuntimeError(
            "--generator node needs tests/js/node_modules: run `make` "
            "(tests/js/node_modules/.package-lock.json) or `npm ci` in tests/js"
        )
    return node


def node_core() -> int | None:
    """The one core Node runs on: the last one this process may use (never the target's
    under ``--pin``, which takes the first); None where affinity cannot be set."""
    available = cores()
    return available[-1] if available else None


def mix_constants(mix: scenario.EventMix) -> dict[str, Any]:
    """``loadtest/scenario.py``'s mix with the run's intervals, for Node (one
    definition of the load)."""
    return {
        **dataclasses.asdict(mix),
        "max_in_flight": scenario.MAX_IN_FLIGHT,
        "help_cancel_after_s": scenario.HELP_CANCEL_AFTER_S,
        "element_ids": scenario.ELEMENT_IDS,
        "annotation_ids": scenario.ANNOTATION_IDS,
        "stroke": scenario.STROKE,
        "settle_poll_s": scenario.SETTLE_POLL_S,
        "max_drain_s": scenario.MAX_DRAIN_S,
        "join_concurrency": scenario.JOIN_CONCURRENCY,
        "join_timeout_s": members.JOIN_TIMEOUT_S,
    }


def node_config(config: scenario.RelayConfig, deflate: bool = True) -> dict[str, Any]:
    """What Node is told: the target, every member with a token, the run, the mix; and
    whether its websockets offer permessage-deflate (the stock client's default)."""
    tokens = Tokens(config.secret)

    def session(plan: SessionPlan) -> dict[str, Any]:
        return {
            "session_id": plan.session_id,
            "tutor_id": plan.tutor_id,
            "tutor_token": tokens(plan.tutor_id, Role.TUTOR),
            "students": [[s, tokens(s, Role.STUDENT)] for s in plan.student_ids],
        }

    return {
        "url": config.url,
        "rate": config.rate,
        "seconds": config.seconds,
        "drain_s": config.drain_s,
        "seed": config.seed,
        "growing": config.growing,
        "deflate": deflate,
        "hard_timeout_s": config.seconds + HARD_TIMEOUT_MARGIN_S,
        "mix": mix_constants(config.mix),
        "sessions": [session(plan) for plan in config.sessions],
    }


class NodePool:
    """``WorkerPool``'s steps for the one Node process (``ready``, ``go``, ``done``, ``close``)."""

    def __init__(self, config: scenario.RelayConfig, workdir: Path, deflate: bool = True) -> None:
        node = node_executable()
        config_path = workdir / "node-relay.json"
        config_path.write_text(json.dumps(node_config(config, deflate)))
        self.core = node_core()
        core = self.core
        argv = [node, str(SCRIPT), str(config_path)]
        self._stderr_path = workdir / "node-relay.log"
        self._stderr = self._stderr_path.open("wb")
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # As ``taskset -c CORE node ...`` would: pinned before exec, so all its threads are.
            preexec_fn=None if core is None else (lambda: os.sched_setaffinity(0, [core])),
        )
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()

    def __enter__(self) -> NodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def ready(self, timeout: float = READY_TIMEOUT_S) -> list[Result]:
        return [self._expect("ready", timeout)]

    def go(self, start_at: float) -> None:
        self._send({"start_at": start_at})

    def done(self, timeout: float, tick: Callable[[], None] | None = None) -> list[Result]:
        result: Result = self._expect("done", timeout, tick)["result"]
        return [result]

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):  # a broken pipe: Node is gone already
                self._send("stop")
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=STOP_TIMEOUT_S)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()

    def _send(self, message: Any) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        self._proc.stdin.flush()

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            self._lines.put(line)
        self._lines.put(b"")  # end of output

    def _expect(
        self, step: str, timeout: float, tick: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"node not {step} in {timeout} s{self._tail()}")
            try:
                line = self._lines.get(timeout=min(left, TICK_S))
            except queue.Empty:
                if tick is not None:
                    tick()
                continue
            if not line:
                code = self._proc.wait(timeout=STOP_TIMEOUT_S)
                raise WorkerError(f"node exited with {code} before {step}{self._tail()}")
            message: dict[str, Any] = json.loads(line)
            if message.get("step") == "error":
                raise WorkerError(f"node failed:\n{message.get('error')}{self._tail()}")
            if message.get("step") != step:
                raise WorkerError(f"expected {step!r} from node, got {line[:200]!r}")
            return message

    def _tail(self) -> str:
        self._stderr.flush()
        text = self._stderr_path.read_text(errors="replace")[-STDERR_TAIL_CHARS:]
        return f"\nnode's stderr:\n{text}" if text else ""
