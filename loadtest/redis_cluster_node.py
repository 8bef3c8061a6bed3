"""One ``redis-server`` of a test's Redis Cluster (loadtest/redis_cluster.py): its ports,
directory, process, role, and a client of its own."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

HOST = "127.0.0.1"
POLL_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 1500


def missing_tools() -> str | None:
    """Why no cluster can be started here, or None."""
    absent = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    return f"{' and '.join(absent)} not on PATH" if absent else None


@dataclass(eq=False)
class ClusterNode:
    """One ``redis-server`` of the cluster: its ports, directory, process and role."""

    port: int
    bus_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    role: str = ""  # "primary" or "replica", as the cluster last said
    primary_id: str | None = None  # a replica's primary
    _client: redis.asyncio.Redis | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except FileNotFoundError:
            return "(no log)"

    def client(self) -> redis.asyncio.Redis:
        """A client of this node alone: short timeouts, no retries (a dead node fails fast)."""
        if self._client is None:
            self._client = redis.asyncio.Redis(
                host=HOST,
                port=self.port,
                decode_responses=True,
                socket_timeout=2,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    async def command(self, *args: str | int) -> Any:
        """One command to this node alone (redis-py leaves ``execute_command`` untyped)."""
        return await self.client().execute_command(*args)  # type: ignore[no-untyped-call]

    async def cluster_state(self) -> str:
        """``cluster_state`` of CLUSTER INFO: ``ok`` or ``fail``."""
        info = await self.command("CLUSTER INFO")  # parsed to a dict
        return str(info["cluster_state"])

    async def close_client(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def spawn(self, node_timeout_ms: int) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        options = {
            "bind": HOST,
            "port": self.port,
            "cluster-port": self.bus_port,  # not port + 10000, which may be taken or > 65535
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": node_timeout_ms,
            # A replica may always stand for election, however long its link was down.
            "cluster-replica-validity-factor": 0,
            # Replicas stay where the test put them.
            "cluster-allow-replica-migration": "no",
            "cluster-allow-reads-when-down": "no",
            "save": "",
            "appendonly": "no",
            # Full syncs at once, not after the default 5 s wait for more replicas.
            "repl-diskless-sync": "yes",
            "repl-diskless-sync-delay": 0,
            "repl-ping-replica-period": 1,
            "dir": self.workdir,
            "logfile": self.log_path,
        }
        args = [binary]
        for name, value in options.items():
            args += [f"--{name}", str(value)]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def answering(self, within: float = 10.0) -> bool:
        """Whether it answers PING within ``within`` s (False once it has exited)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if await self.client().ping():
                    return True
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if not self.alive:
                    return False  # it exited: a port was taken
            await asyncio.sleep(POLL_INTERVAL_S)
        return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as in a crash
            self.process.wait(timeout=10)
