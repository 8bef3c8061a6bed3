"""Target processes under load: the hub or the baseline relay, each on a free loopback port.

Also what ``/proc`` says about a process (CPU seconds, resident memory), and
this process's own CPU, so a report can tell the hub's cost from the
generator's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 3000
# Free ports picked for a target before one is its own (another may take one first).
PORT_ATTEMPTS = 5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The last line of a traceback: "sqlalchemy.exc.OperationalError: ...".
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b")

# The hub under benchmark: rate limits out of the way, quiet logs.
HUB_BENCH_ENV = {
    "HUB_SOCKET_EVENTS_PER_S": "1000",
    "HUB_REST_REQUESTS_PER_S": "100000",
    "HUB_REST_REQUEST_BURST": "100000",
    "HUB_MAX_CONNECTIONS_PER_ADDRESS": "1000000",  # the generator is on one address
    "HUB_LOG_LEVEL": "WARNING",
}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process (``/proc/<pid>/stat`` utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status``, such as ``VmRSS`` or ``VmHWM``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise ValueError(f"expected {key} in /proc/{pid}/status")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cores() -> list[int]:
    """The CPUs this process may run on, in order (empty where that cannot be read)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pinned_cores(pin: bool) -> tuple[list[int] | None, list[int] | None]:
    """``--pin``: the target's cores and the generator's, or ``(None, None)``: the
    target on the first core, the generator on the rest (at least two needed)."""
    available = cores()
    if not pin or len(available) < 2:
        return None, None
    return available[:1], available[1:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TargetProcess:
    """A server under load (``kind`` ``hub`` or ``baseline``) in a subprocess logging to a file."""

    kind: str
    label: str
    url: str
    secret: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)
    exit_code: int | None = None
    # The baseline's own account of its loop, JSON library and driver (``/healthz``).
    stack: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        return status_kib(self.pid, "VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return status_kib(self.pid, "VmHWM") / 1024

    def log_problems(self, limit: int = 10) -> list[str]:
        """The first lines of the log that report an error, or name an exception raised."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        found = [line for line in lines if " ERROR " in line or EXCEPTION_LINE.match(line)]
        return [line[:300] for line in found[:limit]]

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` answers (the baseline says there what it runs, ``stack``)."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=HTTP_TIMEOUT_S) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer

    def get_text(self, path: str) -> str | None:
        """The body of ``GET path`` (such as ``/metrics``), or None if it is not served."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=HTTP_TIMEOUT_S) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError:
            return None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.process.returncode} while starting:\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.label} did not answer /healthz within {timeout} s:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then wait; the exit code (also ``exit_code``), or None if it was killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout=timeout)
            return self.exit_code
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            self._log.close()


def _spawn(
    kind: str,
    label: str,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    workdir: Path,
    cpus: list[int] | None = None,
    port: int | None = None,
) -> TargetProcess:
    if port is not None:
        return _spawn_on(kind, label, argv, env, cwd, workdir, cpus, port)
    for attempt in range(PORT_ATTEMPTS):
        try:
            return _spawn_on(kind, label, argv, env, cwd, workdir, cpus, free_port())
        except PortTaken:
            if attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """Another process took the free port picked for a target before it could bind it."""


def _spawn_on(
    kind: str,
    label: str,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    workdir: Path,
    cpus: list[int] | None,
    port: int,
) -> TargetProcess:
    # Pinned before exec (every thread it starts inherits the mask); the pid stays its own.
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    log_path = workdir / f"{label}.log"
    log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )
    except BaseException:
        log.close()
        raise
    target = TargetProcess(
        kind=kind,
        label=label,
        url=f"http://127.0.0.1:{port}",
        secret=env.get("HUB_JWT_SECRET", ""),
        process=process,
        log_path=log_path,
        _log=log,
    )
    try:
        try:
            target.wait_healthy()
        except RuntimeError:
            if "address already in use" in target.log_tail().lower():
                raise PortTaken(f"port {port} was taken before {label} could bind it") from None
            raise
        # What answered may be another process that took the port first (a hub of a
        # test beside this one): then this target cannot bind it, and goes elsewhere.
        if not listens_on(process.pid, port):
            raise PortTaken(f"port {port} was taken by another process before {label} bound it")
    except BaseException:
        target.stop()
        raise
    return target


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the TCP socket listening on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def start_hub(
    workdir: Path,
    *,
    root: Path = ROOT,
    extra_env: dict[str, str] | None = None,
    label: str = "hub",
    cpus: list[int] | None = None,
    port: int | None = None,
) -> TargetProcess:
    """``python -m realtime serve`` from checkout ``root``, a fresh SQLite file in ``workdir``
    (on ``cpus`` alone, if given; on ``port``, if given, else a free one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_BENCH_ENV)
    env.update(
        HUB_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/{label}.db",
        HUB_JWT_SECRET=f"bench-{secrets.token_hex(16)}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1"]
    return _spawn("hub", label, argv, env, root, workdir, cpus, port)


def start_baseline(
    workdir: Path,
    *,
    label: str = "baseline",
    redis_url: str | None = None,
    stock: bool = False,
    cpus: list[int] | None = None,
) -> TargetProcess:
    """``python -m loadtest.baseline.relay``: the bare python-socketio relay, on the
    hub's event loop, JSON library and Engine.IO driver, or with ``stock`` on plain
    asyncio, the standard ``json`` and Engine.IO's own driver.

    With ``redis_url``, on python-socketio's stock ``AsyncRedisManager``; on ``cpus``
    alone, if given.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("BASELINE_REDIS_URL", None)
    # Any secret will do: the baseline reads the claims without verifying them.
    env["HUB_JWT_SECRET"] = f"baseline-{secrets.token_hex(16)}"
    argv = [sys.executable, "-m", "loadtest.baseline.relay"]
    if redis_url:
        argv += ["--redis-url", redis_url]
    if stock:
        argv.append("--stock")
    target = _spawn("baseline", label, argv, env, ROOT, workdir, cpus)
    try:
        target.stack = target.health()["stack"]
    except BaseException:
        target.stop()
        raise
    return target
