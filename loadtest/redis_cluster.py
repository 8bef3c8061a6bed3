"""A Redis Cluster of a test's (or a load run's) own on loopback: 3 primaries and 3 replicas.

``RedisClusterProcesses`` starts six ``redis-server`` processes in cluster mode, joins
them with ``redis-cli --cluster create``, and waits until every node agrees on the
slot map and every replica is in sync. A test then crashes a primary
(``kill_primary`` and ``wait_promoted``), brings it back (``restart``), fails over
gracefully (``failover``) or moves a slot under traffic (``migrate_slot``, the real
IMPORTING / MIGRATING / MIGRATE / SETSLOT NODE protocol, as ``redis-cli --cluster
reshard`` does it). Every wait is bounded and fails with the nodes' log tails.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
from redis.crc import key_slot

from loadtest.procs import free_port
from loadtest.redis_cluster_node import (
    HOST,
    LOG_TAIL_CHARS,
    POLL_INTERVAL_S,
    ClusterNode,
    missing_tools,
)

__all__ = ["HOST", "SLOTS", "ClusterNode", "RedisClusterProcesses", "missing_tools"]

SLOTS = 16384
START_TIMEOUT_S = 30.0
CREATE_ATTEMPTS = 3
SETTLE_TIMEOUT_S = 20.0
MIGRATE_TIMEOUT_MS = 5000

# A slot map as the nodes report it: (first, last, primary id, sorted replica ids).
SlotMap = tuple[tuple[int, int, str, tuple[str, ...]], ...]


class RedisClusterProcesses:
    """A real Redis Cluster on 127.0.0.1: ``primaries`` primaries with one replica each."""

    def __init__(self, workdir: Path, *, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        self.workdir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [
            ClusterNode(port=free_port(), bus_port=free_port(), workdir=workdir / f"node-{i}")
            for i in range(primaries * 2)
        ]
        self._slots: SlotMap = ()
        self.started_in_s: float | None = None
        self.create_attempts = 0

    # -- what a test reads -------------------------------------------------------

    @property
    def seeds(self) -> str:
        """``host:port,...`` of every node, for ``HUB_REDIS_CLUSTER_NODES``."""
        return ",".join(node.address for node in self.nodes)

    @property
    def primaries(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.role == "primary" and node.alive]

    @property
    def replicas(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.role == "replica" and node.alive]

    def node(self, node_id: str) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"expected a node with id {node_id}, the cluster has {self.nodes}")

    def primary_for(self, key_or_slot: str | bytes | int) -> ClusterNode:
        """The primary serving a key's slot (or a slot), as the nodes last agreed."""
        if isinstance(key_or_slot, int):
            slot = key_or_slot
        else:
            key = key_or_slot.encode() if isinstance(key_or_slot, str) else key_or_slot
            slot = key_slot(key)
        for first, last, primary_id, _ in self._slots:
            if first <= slot <= last:
                return self.node(primary_id)
        raise KeyError(f"expected slot {slot} to be served; the slot map is {self._slots}")

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        for node in self.nodes:
            if node.role == "replica" and node.primary_id == primary.node_id and node.alive:
                return node
        raise KeyError(f"expected a live replica of {primary.address}; nodes: {self.nodes}")

    # -- start and stop ----------------------------------------------------------

    async def start(self) -> None:
        """Start the six servers, create the cluster, and wait until it has settled.

        Rarely (about 1 start in 15 on a loaded machine, with other tests' clusters
        starting and dying beside it) the nodes never agree after ``--cluster
        create``: then the six start again on new ports, at most ``CREATE_ATTEMPTS``
        times in all (``create_attempts`` says how many it took)."""
        began = time.monotonic()
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            self.create_attempts = attempt
            try:
                await self._start_once()
                break
            except AssertionError:
                if attempt == CREATE_ATTEMPTS:
                    raise
                await self.stop()
                for node in self.nodes:
                    shutil.rmtree(node.workdir, ignore_errors=True)
                    node.port, node.bus_port = free_port(), free_port()
        self.started_in_s = time.monotonic() - began

    async def _start_once(self) -> None:
        for node in self.nodes:
            node.spawn(self.node_timeout_ms)
        for node in self.nodes:
            for _ in range(5):  # a port picked as free may have been taken meanwhile
                if await node.answering():
                    break
                node.kill()
                await node.close_client()
                node.port, node.bus_port = free_port(), free_port()
                node.spawn(self.node_timeout_ms)
            else:
                raise AssertionError(f"redis-server did not start:\n{self.log_tails()}")
        await self._create()
        await self.wait_settled(START_TIMEOUT_S)

    async def _create(self) -> None:
        cli = shutil.which("redis-cli")
        assert cli is not None
        args = [cli, "--cluster", "create", *(n.address for n in self.nodes)]
        args += ["--cluster-replicas", "1", "--cluster-yes"]
        process = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        output = b""
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while chunk := await process.stdout.read(4096):
                    output += chunk
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(
                f"redis-cli --cluster create took over {START_TIMEOUT_S} s:\n"
                f"{output.decode(errors='replace')[-LOG_TAIL_CHARS:]}\n{self.log_tails()}"
            ) from None
        if process.returncode != 0:
            raise AssertionError(
                f"redis-cli --cluster create exited {process.returncode}:\n"
                f"{output.decode(errors='replace')[-LOG_TAIL_CHARS:]}\n{self.log_tails()}"
            )

    async def stop(self) -> None:
        """Kill every server (safe to call twice)."""
        self.kill()
        await self.close_clients()

    def kill(self) -> None:
        """Kill every server, from outside an event loop (a module-scoped fixture)."""
        for node in self.nodes:
            node.kill()

    async def close_clients(self) -> None:
        """Close the per-node clients; the next use opens them again (in its own loop)."""
        for node in self.nodes:
            await node.close_client()

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {node.address} ({node.role or '?'}, {'up' if node.alive else 'down'}):\n"
            f"{node.log_tail()}"
            for node in self.nodes
        )

    # -- waiting -----------------------------------------------------------------

    async def until(
        self, what: str, check: Callable[[], Awaitable[str | None]], within: float
    ) -> None:
        """Poll ``check`` (None once satisfied, else what is still wrong) until ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            try:
                problem = await check()
            except (redis.RedisError, OSError) as exc:
                problem = repr(exc)
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {what} within {within} s; still: {problem}\n{self.log_tails()}"
                )
            await asyncio.sleep(POLL_INTERVAL_S)

    async def wait_settled(self, within: float = SETTLE_TIMEOUT_S) -> None:
        """Until every live node says ``cluster_state:ok``, all agree on the slot map
        (every slot covered), and every live replica's link to its primary is up."""
        await self.until("the cluster to settle", self._unsettled, within)

    async def _unsettled(self) -> str | None:
        problem = await self._disagreement()
        if problem is not None:
            return problem
        for node in self.replicas:
            replication = await node.client().info("replication")
            if replication.get("master_link_status") != "up":
                return f"replica {node.address}: {replication}"
            if replication.get("master_port") != self.node(node.primary_id or "").port:
                return f"replica {node.address} replicates another node: {replication}"
            if replication.get("master_sync_in_progress"):
                return f"replica {node.address} is still syncing"
        for primary in self.primaries:
            if not any(r.primary_id == primary.node_id for r in self.replicas):
                return f"primary {primary.address} has no live replica"
        # CLUSTER SLOTS, which clients read, lists a replica only once the gossip has
        # carried a replication offset from it.
        if not all(replica_ids for _, _, _, replica_ids in self._slots):
            return f"CLUSTER SLOTS does not list every replica yet: {self._slots}"
        return None

    async def _disagreement(self) -> str | None:
        """What keeps the live nodes from agreeing on one slot map covering every slot,
        with ``cluster_state:ok``; None once they do (then roles and map are read)."""
        live = [node for node in self.nodes if node.alive]
        maps: dict[str, SlotMap] = {}
        for node in live:
            state = await node.cluster_state()
            if state != "ok":
                return f"{node.address} says cluster_state:{state}"
            maps[node.address] = await self._slot_map(node)
        if len(set(maps.values())) != 1:
            return f"the nodes disagree on the slot map: {maps}"
        slot_map = next(iter(maps.values()))
        if sum(last - first + 1 for first, last, _, _ in slot_map) != SLOTS:
            return f"not every slot is covered: {slot_map}"
        await self._read_roles(live[0])
        if len(self.primaries) + len(self.replicas) != len(live):
            return f"a live node without a role: {self.nodes}"
        self._slots = slot_map
        return None

    @staticmethod
    async def _slot_map(node: ClusterNode) -> SlotMap:
        ranges = []
        for first, last, primary, *replicas in await node.command("CLUSTER SLOTS"):
            ids = tuple(sorted(str(replica[2]) for replica in replicas))
            ranges.append((int(first), int(last), str(primary[2]), ids))
        return tuple(sorted(ranges))

    async def _read_roles(self, source: ClusterNode) -> None:
        """Roles and ids from one node's CLUSTER NODES (its view once all agree)."""
        by_port = {node.port: node for node in self.nodes}
        # redis-py parses CLUSTER NODES into {"host:port@bus": {"node_id": ..., ...}}.
        described = await source.command("CLUSTER NODES")
        for address, about in described.items():
            node = by_port.get(int(address.split("@")[0].rsplit(":", 1)[1]))
            if node is None:
                continue
            node.node_id = about["node_id"]
            node.role = "primary" if "master" in about["flags"].split(",") else "replica"
            node.primary_id = None if about["master_id"] == "-" else about["master_id"]

    # -- failover ----------------------------------------------------------------

    def kill_primary(self, node: ClusterNode) -> ClusterNode:
        """SIGKILL a primary, as a crash; its replica (to await with ``wait_promoted``)."""
        assert node.role == "primary", f"expected a primary, {node.address} is a {node.role}"
        replica = self.replica_of(node)
        node.kill()
        return replica

    async def wait_promoted(
        self, old_primary: ClusterNode, within: float = SETTLE_TIMEOUT_S
    ) -> ClusterNode:
        """Until the dead primary's replica serves its slots and the survivors settle."""
        replica = next(n for n in self.nodes if n.primary_id == old_primary.node_id)
        await old_primary.close_client()

        async def promoted() -> str | None:
            # Its own replica is the dead node (until ``restart``): no replicas asked.
            return await _not_primary(replica) or await self._disagreement()

        await self.until(f"{replica.address} promoted", promoted, within)
        return replica

    async def restart(self, node: ClusterNode, within: float = SETTLE_TIMEOUT_S) -> None:
        """Start a killed node again (same port, same nodes.conf) and wait until it has
        rejoined, as a replica of whichever primary now serves its old slots, in sync."""
        assert not node.alive, f"{node.address} is running"
        await node.close_client()
        node.spawn(self.node_timeout_ms)
        if not await node.answering():
            raise AssertionError(f"{node.address} did not start again:\n{self.log_tails()}")
        await self.wait_settled(within)

    async def failover(self, replica: ClusterNode, within: float = SETTLE_TIMEOUT_S) -> None:
        """``CLUSTER FAILOVER`` on a replica: it and its primary swap roles, nothing lost."""
        assert replica.role == "replica", f"expected a replica, {replica.address} is a primary"
        await replica.command("CLUSTER FAILOVER")

        async def swapped() -> str | None:
            return await _not_primary(replica) or await self._unsettled()

        await self.until(f"{replica.address} to take over", swapped, within)

    # -- resharding --------------------------------------------------------------

    async def migrate_slot(
        self, slot: int, to_primary: ClusterNode, *, batch: int = 10, pause_s: float = 0.0
    ) -> int:
        """Move ``slot`` to ``to_primary`` the way ``redis-cli --cluster reshard`` does;
        ``pause_s`` between batches lets a test write meanwhile (clients see ASK, then
        MOVED). The number of keys moved."""
        source = self.primary_for(slot)
        assert source is not to_primary, f"slot {slot} is already on {to_primary.address}"
        await to_primary.command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        await source.command("CLUSTER SETSLOT", slot, "MIGRATING", to_primary.node_id)
        moved = 0
        while keys := await source.command("CLUSTER GETKEYSINSLOT", slot, batch):
            await source.command(
                "MIGRATE", HOST, to_primary.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys
            )
            moved += len(keys)
            if pause_s:
                await asyncio.sleep(pause_s)
        # The target first: once it owns the slot, the source's MOVED points at it.
        for node in [
            to_primary,
            source,
            *(p for p in self.primaries if p not in (to_primary, source)),
        ]:
            await node.command("CLUSTER SETSLOT", slot, "NODE", to_primary.node_id)
        await self.wait_settled()
        return moved


async def _not_primary(node: ClusterNode) -> str | None:
    """What keeps ``node`` from being a primary yet (None: it is one)."""
    role = await node.command("ROLE")
    return None if role[0] == "master" else f"{node.address} is still a {role[0]}"
