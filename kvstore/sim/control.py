"""The harness's ``Control`` in the simulator: the same nemeses, on simulated parts.

Rules: a kill is a crash of the incarnation (``SimCluster.kill``); a restart takes
``RESTART_S`` of virtual time, as a real process needs to start; pause and resume
freeze and thaw the incarnation's process. Admin calls (health, repair, a replica's
own version) run on the node like any client call, so a paused node does not answer
and a dead one is unreachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kvstore.errors import KVError
from kvstore.harness.control import NodeFaults, NodeHealth, RepairOutcome, describe
from kvstore.node.runtime import Node
from kvstore.sim.cluster import SimCluster
from kvstore.sim.membership import SimNodes

RESTART_S = 0.3
ADMIN_TIMEOUT_S = 1.0
REPAIR_TIMEOUT_S = 60.0


class SimControl:
    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.node_ids = list(cluster.node_ids)

    async def kill(self, node: str) -> None:
        self.cluster.kill(node)

    async def restart(self, node: str) -> None:
        await asyncio.sleep(RESTART_S)
        self.cluster.start_node(node)

    def operator_nodes(self) -> SimNodes:
        return SimNodes(self.cluster)

    async def join(self, node: str) -> None:
        self.cluster.kill(node)
        self.cluster.wipe(node)
        await asyncio.sleep(RESTART_S)
        self.cluster.start_node(node, join=True)

    async def new_machine(self) -> tuple[str, str] | None:
        node, address = self.cluster.add_machine()
        await asyncio.sleep(RESTART_S)
        self.cluster.start_node(node, join=True)
        return node, address

    async def pause(self, node: str) -> None:
        self.cluster.pause(node)

    async def resume(self, node: str) -> None:
        self.cluster.resume(node)

    async def set_faults(self, node: str, faults: NodeFaults) -> None:
        await self.cluster.set_faults(node, faults)

    async def health(self, node: str) -> NodeHealth | None:
        async def work(n: Node) -> NodeHealth:
            views = n.membership.views(n.time.monotonic())
            hints = await n.engine.hint_counts()
            return NodeHealth(
                [f"{v.node} {v.state}" for v in views if v.state != "up"], sum(hints.values())
            )

        try:
            return await self.cluster.call(node, work, ADMIN_TIMEOUT_S)
        except KVError:
            return None

    async def repair(self, node: str) -> RepairOutcome:
        repairer = self.cluster.repairers[node]

        async def work(n: Node) -> RepairOutcome:
            report = await repairer.repair()
            errors = [f"{node}->{r.peer}: {r.error}" for r in report.rounds if r.error]
            return RepairOutcome(report.keys_repaired, errors)

        try:
            return await self.cluster.call(node, work, REPAIR_TIMEOUT_S)
        except KVError as exc:
            return RepairOutcome(0, [f"{node}: {exc.code}"])

    async def versions(self, node: str, keys: Sequence[bytes]) -> list[str]:
        return [await self._version(node, key) for key in keys]

    async def _version(self, node: str, key: bytes) -> str:
        try:
            record = await self.cluster.read_local(node, key)
            if record is None:
                return describe(None, False)
            return describe(record.ts, record.value is None)
        except KVError as exc:
            return f"unreachable: {exc.code}"
