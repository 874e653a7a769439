"""The membership operator's ``Nodes`` in the simulator: each call runs on the node as
an Admin call would (``SimCluster.call``: a hop there, the work in the node's process, a
hop back), so a dead node is unreachable and a paused one times out.

Rules: messages are handed over as objects (the wire encoding is the gRPC world's and
is tested there); every failure, the node's own refusals included, is a
``NodeCallFailed`` naming the node, as a gRPC status would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kvstore.cluster.operator import NodeCallFailed, PullStep
from kvstore.core.epochs import Reply, Request, RingRecord
from kvstore.errors import KVError
from kvstore.net.link import PeerError
from kvstore.node.runtime import Node
from kvstore.sim.cluster import SimCluster

T = TypeVar("T")

ADMIN_TIMEOUT_S = 2.0
CLEAN_UP_TIMEOUT_S = 120.0


class SimNodes:
    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster

    async def _call(self, node: str, work: Callable[[Node], Awaitable[T]], timeout: float) -> T:
        try:
            return await self.cluster.call(node, work, timeout)
        except (KVError, PeerError, ValueError, RuntimeError, LookupError) as exc:
            raise NodeCallFailed(f"{node}: {exc}") from None

    async def ring(self, node: str) -> RingRecord | None:
        async def work(n: Node) -> RingRecord | None:
            return n.epochs.chosen if n.epochs is not None else None

        return await self._call(node, work, ADMIN_TIMEOUT_S)

    async def epoch(self, node: str, message: Request) -> Reply:
        return await self._call(node, lambda n: n.epoch_message(message), ADMIN_TIMEOUT_S)

    async def pull(
        self,
        target: str,
        source: str,
        ranges: list[tuple[int, int]],
        after: bytes | None,
        rate_keys_s: float,
        budget_s: float,
    ) -> PullStep:
        async def work(n: Node) -> PullStep:
            got = await n.pull_ranges(source, ranges, after, rate_keys_s, budget_s)
            return PullStep(got.keys, got.stored, got.next)

        return await self._call(target, work, budget_s + 60.0)

    async def clean_up(self, node: str) -> tuple[int, int]:
        async def work(n: Node) -> tuple[int, int]:
            got = await n.clean_up()
            return got.scanned, got.dropped

        return await self._call(node, work, CLEAN_UP_TIMEOUT_S)

    def know(self, record: RingRecord) -> None:
        pass  # the simulated network reaches every node by id

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def now(self) -> float:
        return self.cluster.loop.time()
