"""What the harness needs from a cluster, real or simulated: one small interface.

Rules: the nemeses, the settle phase, the repair round and the convergence check speak
only to a ``Control``; ``LocalControl`` carries it out on real processes (signals, and
the Admin service over mutual TLS through ``kvstore.cluster.admin``),
``kvstore.sim.control.SimControl`` in the simulator. A node that does not answer is
reported as such (``health`` None, a version ``unreachable: ...``), never raised, so a
check sees the cluster as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from kvstore.cluster.apply import GrpcNodes
from kvstore.cluster.local import LocalCluster
from kvstore.cluster.operator import Nodes
from kvstore.core.version import Timestamp
from kvstore.net.convert import ts_from_pb
from kvstore.pb import kvstore_pb2 as pb

# Admin.ReadLocal calls one control keeps in flight to a node.
_VERSIONS_IN_FLIGHT = 32


@dataclass(slots=True)
class NodeFaults:
    isolated: set[str] = field(default_factory=set)
    clock_offset_ms: int = 0
    delay_ms: int = 0  # outgoing replica messages wait this long
    drop: float = 0.0  # this fraction of outgoing replica messages is lost
    lying_disk: bool = False
    lose_hints: bool = False
    planted: tuple[str, ...] = ()  # known bugs switched on for the whole run


@dataclass(slots=True)
class NodeHealth:
    peers_not_up: list[str]  # "n2 down", "n4 suspect"
    hints_pending: int


@dataclass(slots=True)
class RepairOutcome:
    keys_repaired: int
    errors: list[str]


def describe(ts: Timestamp | None, tombstone: bool) -> str:
    """A replica's version as the convergence check compares it (None: absent)."""
    if ts is None:
        return "absent"
    return f"{ts.wall}.{ts.logical}@{ts.node}" + (" tombstone" if tombstone else "")


class Control(Protocol):
    node_ids: list[str]

    async def kill(self, node: str) -> None: ...

    async def restart(self, node: str) -> None: ...

    async def pause(self, node: str) -> None: ...

    async def resume(self, node: str) -> None: ...

    async def set_faults(self, node: str, faults: NodeFaults) -> None:
        """Put the node's fault state in place, whole; a node that is down is skipped."""
        ...

    async def health(self, node: str) -> NodeHealth | None:
        """Peers the node does not see up and its pending hints; None: not answering."""
        ...

    async def repair(self, node: str) -> RepairOutcome: ...

    async def versions(self, node: str, keys: Sequence[bytes]) -> list[str]:
        """The node's own version of each key (``describe``), or ``unreachable: ...``."""
        ...

    def operator_nodes(self) -> Nodes:
        """The cluster as the membership operator speaks to it."""
        ...

    async def join(self, node: str) -> None:
        """Wipe a stopped node's data and start it joining the running cluster."""
        ...

    async def new_machine(self) -> tuple[str, str] | None:
        """Start a brand-new machine joining the running cluster (not yet a member):
        its id and address; None when this control cannot make machines."""
        ...


class LocalControl:
    """``Control`` over a ``LocalCluster``: real signals, real Admin calls."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.node_ids = list(cluster.config.node_ids)

    async def kill(self, node: str) -> None:
        await asyncio.to_thread(self.cluster.kill, node)

    async def restart(self, node: str) -> None:
        await asyncio.to_thread(self.cluster.start_node, node)

    def operator_nodes(self) -> Nodes:
        addresses = {n.id: n.address for n in self.cluster.config.nodes}
        return GrpcNodes(addresses, self.cluster.dialer)

    async def join(self, node: str) -> None:
        await asyncio.to_thread(self._join, node)

    async def new_machine(self) -> tuple[str, str] | None:
        return None  # a new machine needs its own config and certificate: not made here

    def _join(self, node: str) -> None:
        self.cluster.stop_node(node)
        shutil.rmtree(self.cluster.config.node(node).data_dir, ignore_errors=True)
        self.cluster.start_node(node, join=True)

    async def pause(self, node: str) -> None:
        self.cluster.pause(node)

    async def resume(self, node: str) -> None:
        self.cluster.resume(node)

    async def set_faults(self, node: str, faults: NodeFaults) -> None:
        request = pb.Faults(
            isolate_from=sorted(faults.isolated),
            clock_offset_ms=faults.clock_offset_ms,
            delay_ms=faults.delay_ms,
            drop=faults.drop,
            lying_disk=faults.lying_disk,
            lose_hints=faults.lose_hints,
            planted_bugs=list(faults.planted),
        )
        # a dead or paused node is skipped: its state is pushed again when healed
        async with self.cluster.admin(node) as admin:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await admin.set_faults(request, timeout=2, wait_for_ready=True)

    async def health(self, node: str) -> NodeHealth | None:
        async with self.cluster.admin(node) as admin:
            try:
                reply = await admin.status(timeout=1.0)
            except grpc.aio.AioRpcError:
                return None
        return NodeHealth(
            [f"{p.node} {p.state}" for p in reply.peers if p.state != "up"],
            sum(reply.hints_pending.values()),
        )

    async def repair(self, node: str) -> RepairOutcome:
        async with self.cluster.admin(node) as admin:
            try:
                reply = await admin.repair(timeout=60, wait_for_ready=True)
            except grpc.aio.AioRpcError as exc:
                return RepairOutcome(0, [f"{node}: {exc.code().name}"])
        errors = [f"{node}->{p.peer}: {p.error}" for p in reply.peers if p.error]
        return RepairOutcome(reply.keys_repaired, errors)

    async def versions(self, node: str, keys: Sequence[bytes]) -> list[str]:
        # One channel (one TLS handshake) for all the keys, a bounded number in flight: a
        # channel per key made a 900-key convergence check take 20 s.
        gate = asyncio.Semaphore(_VERSIONS_IN_FLIGHT)
        async with self.cluster.admin(node) as admin:

            async def one(key: bytes) -> str:
                async with gate:
                    try:
                        # wait_for_ready: a node restarted moments ago may still be in its
                        # channel's reconnect backoff
                        reply = await admin.read_local(key, timeout=5, wait_for_ready=True)
                    except grpc.aio.AioRpcError as exc:
                        return f"unreachable: {exc.code().name}"
                v = reply.version
                return describe(ts_from_pb(v.ts) if v.found else None, v.tombstone)

            return list(await asyncio.gather(*(one(key) for key in keys)))
