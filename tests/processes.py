"""Hub processes for tests: ``python -m realtime serve`` on loopback, on the port the
hub itself picked (``--port 0``: no race for a free port between tests).

``spawn_hub(..., forked=True)`` starts the same ``serve`` in a process forked from
a server that imported the hub once (the standard library's multiprocessing
fork server, preloaded): a hub is up in about a tenth of the time, because it
does not import the hub's modules again. The suites that run against several
hub processes per test use it; the tests of the command line, of killing and
stopping hubs and of the JavaScript client start ``python -m realtime serve``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import redis.asyncio
from pydantic import SecretStr

from loadtest.procs import free_port
from realtime.base.config import Settings
from realtime.base.identity import Role, mint_token
from tests import forked
from tests.support import KEPT_HUB_VARS, UNLIMITED

ROOT = Path(__file__).resolve().parent.parent
HUB_START_TIMEOUT_S = 20.0
HUB_STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 4000


_fork_server = multiprocessing.get_context("forkserver")
_fork_server.set_forkserver_preload(["realtime.app", "realtime.cli", "tests.forked"])


class ForkedProcess:
    """A hub forked by the fork server, with the part of ``Popen`` the tests use."""

    def __init__(self, env: dict[str, str], log_path: Path, root: Path) -> None:
        self._process = _fork_server.Process(
            target=forked.serve, args=(env, log_path, root), name="hub", daemon=False
        )
        self._process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None and self._process.pid is not None:
            os.kill(self._process.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("forked hub", timeout or 0)
        return self._process.exitcode


# What a hub logs once it listens (realtime/cli.py).
SERVING = re.compile(rb"hub serving on (http://127\.0\.0\.1:\d+) ")


@dataclass
class HubProcess:
    """``python -m realtime serve`` in a subprocess, logging to a file."""

    settings: Settings
    process: subprocess.Popen[bytes] | ForkedProcess
    log_path: Path
    _log: IO[bytes] = field(repr=False)
    _url: str | None = None

    @property
    def url(self) -> str:
        """Where the hub serves, as it logged it (``wait_healthy`` waits for that)."""
        if self._url is None:
            found = SERVING.search(self.log_path.read_bytes())
            if found is None:
                raise AssertionError(f"the hub has not said where it serves:\n{self.log_tail()}")
            self._url = found.group(1).decode()
        return self._url

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-LOG_TAIL_CHARS:]

    def token(self, sub: str, role: Role, center: str = "c1", **kw: Any) -> str:
        return mint_token(self.settings, sub=sub, role=role, center=center, **kw)

    def wait_healthy(self, timeout: float = HUB_START_TIMEOUT_S) -> None:
        """Poll GET /healthz until it answers 200; fail with the hub's log otherwise."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            code = self.process.poll()
            if code is not None:
                pytest.fail(f"the hub exited with {code} while starting:\n{self.log_tail()}")
            try:
                if self._url is None and not SERVING.search(self.log_path.read_bytes()):
                    raise ConnectionError("not listening yet")
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200 and json.load(resp) == {"status": "ok"}:
                        return
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = exc
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the hub did not answer /healthz within {timeout} s (last: {last!r}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def stop(self, timeout: float = HUB_STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then wait; the exit code, or None if it outlived ``timeout`` (then killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            self._log.close()


def spawn_hub(
    tmp_path: Path,
    secret: str,
    *,
    settings: dict[str, str] | None = None,
    name: str = "hub",
    root: Path = ROOT,
    forked: bool = False,
) -> HubProcess:
    """Start a hub on a loopback port of its choosing (``start_hub``, without waiting);
    ``forked``: from the fork server (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k in KEPT_HUB_VARS}
    env.update(
        HUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        HUB_JWT_SECRET=secret,
        # Offline at once, as the in-process hubs of the suite (see conftest).
        HUB_PRESENCE_GRACE_S="0",
        PYTHONUNBUFFERED="1",
    )
    # Rate limits no test meets by accident, however fast the machine (see conftest).
    env.update({f"HUB_{name.upper()}": str(value) for name, value in UNLIMITED.items()})
    env.update(settings or {})
    log_path = tmp_path / f"{name}.log"
    log = log_path.open("ab")
    process: subprocess.Popen[bytes] | ForkedProcess
    try:
        if forked:
            assert root == ROOT, "the fork server runs this checkout"
            process = ForkedProcess(env, log_path, root)
        else:
            process = subprocess.Popen(
                [sys.executable, "-m", "realtime", "serve", "--host", "127.0.0.1", "--port", "0"],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    except BaseException:
        log.close()
        raise
    return HubProcess(
        settings=Settings(jwt_secret=secret),
        process=process,
        log_path=log_path,
        _log=log,
    )


def start_hub(
    tmp_path: Path,
    secret: str,
    *,
    settings: dict[str, str] | None = None,
    name: str = "hub",
    root: Path = ROOT,
) -> HubProcess:
    """Start a hub on loopback and wait until it is healthy.

    ``settings`` are extra ``HUB_*`` variables (default database: a SQLite
    file in ``tmp_path``); ``name`` tells the log files of several hubs apart;
    ``root`` is the checkout to run (another one for before/after benchmarks).
    """
    hub = spawn_hub(tmp_path, secret, settings=settings, name=name, root=root)
    try:
        hub.wait_healthy()
    except BaseException:
        hub.stop()
        raise
    return hub


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``HUB_*`` variables that give a hub process exactly ``settings``."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"HUB_{name.upper()}"] = str(value)
    return env


class RedisServer:
    """A redis-server of the test's own on a free loopback port, to stop and start."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def spawn(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        options = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        options += ["--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            options += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            [binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def start(self) -> None:
        """Start redis-server on ``port`` and wait until it answers. The first start
        moves to another free port if the one picked was taken meanwhile (by another
        test's server); a restart keeps its port, which its clients know."""
        for _ in range(5):
            self.spawn()
            if await self._answering():
                self.started = True
                return
            assert self.process is not None
            if self.started or self.process.poll() is None:
                break
            self.port = free_port()
        raise AssertionError(f"redis-server did not start on 127.0.0.1:{self.port}")

    async def _answering(self, within: float = 10.0) -> bool:
        client = redis.asyncio.Redis.from_url(self.url)
        deadline = time.monotonic() + within
        try:
            while time.monotonic() < deadline:
                try:
                    if await client.ping():
                        return True
                except Exception:
                    assert self.process is not None
                    if self.process.poll() is not None:
                        return False  # it exited: the port was taken
                await asyncio.sleep(POLL_INTERVAL_S)
            return False
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # everything in it is lost, as in a crash
            self.process.wait(timeout=10)
