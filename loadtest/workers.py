"""Generator worker processes, so the clients, not one Python process, carry the load.

Each worker runs one ``Scenario`` (whole sessions: a tutor and its students
share a process, so their ``time.perf_counter`` readings compare; on Linux it
is CLOCK_MONOTONIC, shared by every process anyway). The parent steps all
workers together:

    ready  (each has prepared: connected and joined, or only minted tokens)
    go     (start at one monotonic instant)       -> done (the result)
    stop   (after the parent has sampled the target) -> the worker closes

Each result carries ``cpu_s``: the worker's own CPU seconds from ``go`` to
``done``, so a reader can tell whether the generator was the bottleneck.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from loadtest.procs import own_cpu_seconds

Result = dict[str, Any]
READY_TIMEOUT_S = 600.0


class Scenario(Protocol):
    async def prepare(self, http: aiohttp.ClientSession) -> Result: ...

    async def run(self, start_at: float) -> Result: ...

    async def close(self) -> None: ...


ScenarioFactory = Callable[[Any], Scenario]


class WorkerError(RuntimeError):
    """A worker failed; the message carries its traceback."""


def _child(
    conn: multiprocessing.connection.Connection,
    factory: ScenarioFactory,
    config: Any,
    cpus: list[int] | None = None,
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    asyncio.run(_serve(conn, factory(config)))


async def _serve(conn: multiprocessing.connection.Connection, scenario: Scenario) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            try:
                conn.send(("ready", await scenario.prepare(http)))
                start_at = await loop.run_in_executor(None, conn.recv)
                if start_at == "stop":
                    return
                cpu = own_cpu_seconds()
                result = await scenario.run(start_at)
                result["cpu_s"] = own_cpu_seconds() - cpu
                conn.send(("done", result))
                await loop.run_in_executor(None, conn.recv)
            finally:
                await scenario.close()
    except Exception:
        conn.send(("error", traceback.format_exc()))


class WorkerPool:
    """One process per config; every step waits for all of them, bounded by a timeout.

    With ``cpus`` every worker runs on those cores only (``--pin``)."""

    def __init__(
        self, factory: ScenarioFactory, configs: list[Any], cpus: list[int] | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for config in configs:
            parent, child = context.Pipe()
            proc = context.Process(target=_child, args=(child, factory, config, cpus), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self, timeout: float = READY_TIMEOUT_S) -> list[Result]:
        return self._collect("ready", timeout)

    def go(self, start_at: float) -> None:
        for conn in self._conns:
            conn.send(start_at)

    def done(self, timeout: float, tick: Callable[[], None] | None = None) -> list[Result]:
        """Wait for every result; ``tick`` runs about twice a second meanwhile (sampling)."""
        return self._collect("done", timeout, tick)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send("stop")
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join()

    def _collect(
        self, step: str, timeout: float, tick: Callable[[], None] | None = None
    ) -> list[Result]:
        results: dict[int, Result] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(self._conns):
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"{len(self._conns) - len(results)} workers not {step} in {timeout} s"
                )
            waiting = [c for i, c in enumerate(self._conns) if i not in results]
            for ready in multiprocessing.connection.wait(waiting, timeout=min(left, 0.5)):
                index = self._conns.index(ready)  # type: ignore[arg-type]
                try:
                    kind, payload = self._conns[index].recv()
                except EOFError:
                    raise WorkerError(f"worker {index} exited before {step}") from None
                if kind == "error":
                    raise WorkerError(f"worker {index} failed:\n{payload}")
                results[index] = payload
            if tick is not None:
                tick()
        return [results[i] for i in range(len(self._conns))]


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt round-robin into at most ``parts`` non-empty lists."""
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]
