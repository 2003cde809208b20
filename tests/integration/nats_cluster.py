"""A three-node NATS JetStream cluster on 127.0.0.1, for fault tests that need R3 streams.

Why: a single nats-server can only be up or down; what production runs (the official NATS chart,
three replicas) can lose its stream leader, or its quorum, while the rest stays up. Each node is
the same `nats-server` binary the other tests use (`dev.natsserver.NatsServer`), with its own
client and cluster ports (free ones), its own store folder and a server name, routed to the two
others. Nodes are stopped by PID; a killed node restarts on the same ports and store, and catches
up from its peers. Every wait is on a condition (a leader elected, every replica current), never
a fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.js.errors import BadRequestError, NotFoundError

from onceflow_operator.clients import topology
from onceflow_operator.clients.topology import STREAM_MAX_AGE as STREAMS
from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract import subjects

__all__ = ["CLUSTER_NAME", "NatsCluster", "Node"]

CLUSTER_NAME = "onceflow-test"


@dataclass
class Node:
    """One member: its server process (client port, store) and the port its routes listen on."""

    name: str
    server: NatsServer
    cluster_port: int

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def running(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None


@dataclass
class NatsCluster:
    """Three routed nats-server processes with JetStream (R3 streams need all three to exist)."""

    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        for i, port in enumerate(cluster_ports):
            routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(cluster_ports) if j != i)
            name = f"n{i + 1}"
            extra = [
                "--name",
                name,
                "--cluster_name",
                CLUSTER_NAME,
                "--cluster",
                f"nats://127.0.0.1:{port}",
                "--routes",
                routes,
            ]
            self.nodes.append(Node(name, NatsServer(extra=extra), port))

    @property
    def url(self) -> str:
        """Every node's client URL, comma separated (what `--nats` and `natsio.connect` take)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def start(self) -> None:
        for node in self.nodes:
            node.server.start()

    def kill(self, name: str) -> None:
        """kill -9 one node (its store stays, as a crashed pod's volume does)."""
        self.node(name).server.stop(kill=True)

    def restart(self, name: str) -> None:
        """Start a stopped node again on its ports and store."""
        self.node(name).server.start()

    def close(self) -> None:
        for node in self.nodes:
            node.server.close()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        """A short-lived connection to whichever nodes are up (never reconnecting for ever)."""
        live = [node.url for node in self.nodes if node.running]
        nc = await nats.connect(live, connect_timeout=2, max_reconnect_attempts=2, reconnect_time_wait=0.2)
        try:
            yield nc
        finally:
            await nc.close()

    async def leader(self, stream: str) -> str | None:
        """Name of the node leading `stream` now (its stream info's `cluster.leader`), None without one."""
        try:
            async with self.client() as nc:
                info = await nc.jetstream(timeout=2).stream_info(stream)
        except (nats.errors.Error, NotFoundError, TimeoutError, OSError):
            return None
        return info.cluster.leader if info.cluster is not None else None

    async def replicas(self, stream: str) -> int:
        """How many replicas `stream` is configured with."""
        async with self.client() as nc:
            info = await nc.jetstream(timeout=5).stream_info(stream)
        return int(info.config.num_replicas or 1)

    async def current(self, stream: str) -> bool:
        """True when `stream` has a leader and every other replica is current and online."""
        try:
            async with self.client() as nc:
                info = await nc.jetstream(timeout=2).stream_info(stream)
        except (nats.errors.Error, NotFoundError, TimeoutError, OSError):
            return False
        cluster = info.cluster
        if cluster is None or not cluster.leader:
            return False
        peers = cluster.replicas or []
        return len(peers) == self.size - 1 and all(p.current and not p.offline for p in peers)

    async def wait_for_leader(self, stream: str, *, within: float = 60.0, other_than: str | None = None) -> str:
        """Wait until `stream` has a leader (one that is not `other_than`, when given); return its name."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            leader = await self.leader(stream)
            if leader and leader != other_than:
                return leader
            await asyncio.sleep(0.1)
        raise AssertionError(f"stream {stream} had no leader (other than {other_than}) within {within}s")

    async def wait_until_current(self, streams: list[str] | None = None, *, within: float = 90.0) -> None:
        """Wait until every stream (all Onceflow streams by default) has a leader and current replicas."""
        deadline = time.monotonic() + within
        pending = list(streams if streams is not None else STREAMS)
        while pending:
            if await self.current(pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {pending[0]} not current on all {self.size} nodes within {within}s")
            await asyncio.sleep(0.1)

    async def wait_for_jetstream(self, *, within: float = 60.0) -> None:
        """Wait until the JetStream meta group has a leader (account info answers)."""
        deadline = time.monotonic() + within
        while True:
            try:
                async with self.client() as nc:
                    await nc.jetstream(timeout=2).account_info()
                return
            except (nats.errors.Error, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"JetStream meta leader not elected within {within}s") from None
                await asyncio.sleep(0.1)

    async def wait_until_unavailable(self, stream: str = subjects.IN_STREAM, *, within: float = 60.0) -> None:
        """Wait until the surviving nodes stop answering for `stream` (quorum loss noticed).

        Killed peers are noticed only after the cluster's heartbeats time out; until then a
        surviving follower may still answer as if nothing happened, and a process starting then
        binds. A survivor that leads `stream` keeps answering its stream info: kill the leader.
        """
        deadline = time.monotonic() + within
        while True:
            try:
                async with self.client() as nc:
                    await nc.jetstream(timeout=1).stream_info(stream)
            except (nats.errors.Error, TimeoutError, OSError):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{stream} still answered {within}s after quorum was lost")
            await asyncio.sleep(0.2)

    async def provision(self, namespace: str | None = None) -> None:
        """Every Onceflow stream with three replicas, and a namespace's key bucket with three.

        What the operator does for a cluster told `jetstream.replicas: 3` (clients/topology.py).
        """
        await self.wait_for_jetstream()
        settings = topology.TopologySettings(replicas=self.size)
        async with self.client() as nc:
            js = nc.jetstream(timeout=10)
            deadline = time.monotonic() + 60
            while True:
                try:
                    await topology.ensure_streams(js, settings)
                    if namespace is not None:
                        await topology.ensure_buckets(js, namespace, settings)
                    break
                except (BadRequestError, NotFoundError):
                    # "no suitable peers for placement": the meta group has a leader before it
                    # knows all three peers; an R3 stream can be placed once it does.
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        await self.wait_until_current(
            [*STREAMS, *([subjects.kv_stream(subjects.kv_bucket(namespace))] if namespace else [])]
        )
