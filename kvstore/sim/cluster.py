"""A simulated cluster: real ``Node``s on the simulated network, disks and clocks.

Rules and invariants:
- Each node incarnation is a simulated process (``n3#2``: node n3, second start). Its
  tasks, timers and message deliveries run in that process's context, so ``pause``
  freezes them and ``kill`` ends them (``kvstore.sim.loop``).
- ``kill`` is a crash: the incarnation's memory is dropped, its disk keeps what was
  synced (a lying disk loses what it held), peers' requests to it fail as a reset
  stream would. ``start_node`` builds a new ``Node`` on the same disk.
- The node's world faults live in the world, not in the node: partitions, drops and
  delays in the network, skew in the node's clock. What the node holds (the lying-disk
  wrapper's switch, lost hints, planted bugs) is set on it as Admin.SetFaults does,
  and a restarted node forgets it, as a real one does (the harness pushes it again).
- Clients reach a node's coordinator through ``kvstore.server.kv_calls``, the same
  code a gRPC call runs, so admission, roles and error classes are production's.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client.metrics_core import Metric

from kvstore.config import ClusterConfig
from kvstore.core.version import Record
from kvstore.errors import CoordinatorUnreachable, RequestTimeout
from kvstore.harness.control import NodeFaults
from kvstore.node.antientropy import AntiEntropy
from kvstore.node.clock import inline
from kvstore.node.metrics import NodeMetrics
from kvstore.node.ring_store import MemoryRingStore
from kvstore.node.runtime import Node
from kvstore.sim.disk import SimDisk, SimEngine
from kvstore.sim.loop import VirtualLoop, process_context
from kvstore.sim.network import SimNetwork

T = TypeVar("T")


class SimClock:
    """One node's clocks: virtual time for deadlines, virtual time plus skew (and
    optional drift) for the physical clock the hybrid clock reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.skew_us = 0
        self.drift = 0.0  # fraction: 1e-4 runs 100 us fast per second
        self._drift_from = loop.time()

    def monotonic(self) -> float:
        return self.loop.time()

    def wall_us(self) -> int:
        now = self.loop.time()
        return (
            int(now * 1_000_000) + self.skew_us + int((now - self._drift_from) * self.drift * 1e6)
        )


class SimCluster:
    def __init__(self, config: ClusterConfig, rng: random.Random, *, trace: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualLoop):
            raise RuntimeError("a SimCluster runs on kvstore.sim.loop.VirtualLoop")
        self.loop = loop
        self.config = config
        self.node_ids = list(config.node_ids)
        self.rng = rng
        self.network = SimNetwork(rng, self.node_ids, trace=trace)
        self.disks = {n: SimDisk() for n in self.node_ids}
        self.ring_stores: dict[str, MemoryRingStore] = {}
        self.clocks = {n: SimClock(loop) for n in self.node_ids}
        self.nodes: dict[str, Node | None] = dict.fromkeys(self.node_ids)
        self.repairers: dict[str, AntiEntropy] = {}
        self.processes: dict[str, str] = {}
        self.contexts: dict[str, contextvars.Context] = {}
        self.starts = dict.fromkeys(self.node_ids, 0)
        self.paused: set[str] = set()
        self.faults = {n: NodeFaults() for n in self.node_ids}
        self._client_calls: dict[str, dict[asyncio.Future[Any], None]] = {}
        self._dead_metrics: list[Metric] = []
        self.configs: dict[str, ClusterConfig] = {}  # a new machine's own (it lists itself)

    # --------------------------------------------------------------- lifecycle

    def start(self) -> None:
        for node_id in self.node_ids:
            self.start_node(node_id)

    def start_node(self, node_id: str, *, join: bool = False) -> None:
        """Start ``node_id`` on its disk; ``join``: new to the running cluster (it learns
        the ring from its peers, as ``kvstore node --join``)."""
        if self.nodes[node_id] is not None:
            return
        self.starts[node_id] += 1
        process = f"{node_id}#{self.starts[node_id]}"
        context = process_context(process)
        node = context.run(self._build, node_id, context, join)
        self.nodes[node_id] = node
        self.processes[node_id] = process
        self.contexts[node_id] = context
        self.network.attach(node_id, process, context, node.handle_frame)
        context.run(self.loop.create_task, node.start(), name=f"{process} start")

    def add_machine(self) -> tuple[str, str]:
        """A brand-new machine, not a member and not started: its id (the next ``nK``
        free) and address. Its config is the cluster's plus itself, as an operator
        writes for ``kvstore node --id nK --join``; ``start_node(id, join=True)`` starts
        it, and the membership operator adds it to the ring."""
        number = len(self.node_ids) + 1
        while f"n{number}" in self.nodes:
            number += 1
        node_id, address = f"n{number}", f"sim:{number}"
        template = self.config.nodes[0]
        machine = dataclasses.replace(
            template, id=node_id, port=number, data_dir=template.data_dir.with_name(node_id)
        )
        self.configs[node_id] = self.config.with_nodes((*self.config.nodes, machine))
        self.node_ids.append(node_id)
        self.network.add_node(node_id)
        self.disks[node_id] = SimDisk()
        self.clocks[node_id] = SimClock(self.loop)
        self.nodes[node_id] = None
        self.starts[node_id] = 0
        self.faults[node_id] = NodeFaults()
        return node_id, address

    def _config_for(self, node_id: str) -> ClusterConfig:
        """The config ``node_id`` starts with: the cluster's (a new machine's lists it
        too), its nodes those of the ring the node last served once membership changed,
        as an operator's cluster.toml follows ``kvstore cluster apply``."""
        config = self.configs.get(node_id, self.config)
        state = self.ring_stores[node_id].load() if node_id in self.ring_stores else None
        if state is None or node_id not in state.chosen.ids:
            return config
        machines = {n.id: n for c in (self.config, *self.configs.values()) for n in c.nodes}
        return config.with_nodes(tuple(machines[m] for m in state.chosen.ids))

    def _build(self, node_id: str, context: contextvars.Context, join: bool) -> Node:
        node = Node(
            self._config_for(node_id),
            node_id,
            SimEngine(self.disks[node_id]),
            enable_faults=True,
            transport=self.network.transport(node_id, context, self.config.max_peer_pending),
            clock=self.clocks[node_id],
            offload=inline,
            ring_store=self.ring_stores.setdefault(node_id, MemoryRingStore()),
            join=join,
        )
        self.repairers[node_id] = AntiEntropy(node)
        node.metrics = NodeMetrics(node)  # a registry, not served: read by expositions()
        return node

    def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node is None:
            return
        if node.metrics is not None:  # what it measured outlives it (a scraper had it)
            self._dead_metrics.extend(node.metrics.registry.collect())
        self.loop.kill(self.processes[node_id])
        self.network.detach(node_id)
        self.nodes[node_id] = None
        self.paused.discard(node_id)
        for call in self._client_calls.pop(node_id, {}):
            if not call.done():
                call.set_exception(
                    CoordinatorUnreachable(f"{node_id}: the connection reset", definite=False)
                )

    def wipe(self, node_id: str) -> None:
        """A new, empty disk and ring store for a node that is down (an operator wiping
        a removed machine before it joins again)."""
        if self.nodes[node_id] is not None:
            raise RuntimeError(f"{node_id} is running: stop it before wiping its disk")
        self.disks[node_id] = SimDisk()
        self.ring_stores[node_id] = MemoryRingStore()

    def pause(self, node_id: str) -> None:
        if self.nodes[node_id] is not None:
            self.paused.add(node_id)
            self.loop.pause(self.processes[node_id])

    def resume(self, node_id: str) -> None:
        self.paused.discard(node_id)
        if node_id in self.processes:
            self.loop.resume(self.processes[node_id])

    def running(self, node_id: str) -> Node | None:
        """The node, if it is up and not paused (so it can answer now)."""
        return None if node_id in self.paused else self.nodes[node_id]

    # ------------------------------------------------------------------ faults

    async def set_faults(self, node_id: str, faults: NodeFaults) -> None:
        """Put ``node_id``'s faults in place whole (as ``Admin.SetFaults`` does). A copy
        is kept: the harness edits its own state between pushes, and a node's seam
        changes only when pushed."""
        faults = dataclasses.replace(faults, isolated=set(faults.isolated))
        self.faults[node_id] = faults
        self.clocks[node_id].skew_us = faults.clock_offset_ms * 1000
        self._apply_network()
        node = self.nodes[node_id]
        if node is not None:
            # node-held faults, as Admin.SetFaults sets them (the lying disk included:
            # it is the node's storage wrapper, and its held writes die with the node)
            node.faults.lying_disk = faults.lying_disk
            node.faults.lose_hints = faults.lose_hints
            node.faults.planted = frozenset(faults.planted)
            if not faults.lying_disk:
                await node.stop_lying()

    def _apply_network(self) -> None:
        self.network.heal()
        for src, faults in self.faults.items():
            for dst in self.node_ids:
                if dst == src:
                    continue
                link = self.network.link_faults(src, dst)
                link.delay_s = faults.delay_ms / 1000
                link.drop = faults.drop
                if dst in faults.isolated:
                    # the seam cuts both ways at the node that holds the rule
                    link.cut = True
                    self.network.link_faults(dst, src).cut = True

    # ----------------------------------------------------------------- calls

    async def call(self, node_id: str, work: Callable[[Node], Awaitable[T]], timeout_s: float) -> T:
        """Run ``work(node)`` on ``node_id`` as a client call would: a hop there, the
        work in the node's process, a hop back. Raises ``CoordinatorUnreachable`` (a node
        that is down: definite; one that died during the call: indefinite) and
        ``RequestTimeout`` at ``timeout_s``."""
        node = self.nodes[node_id]
        if node is None:
            raise CoordinatorUnreachable(f"{node_id}: connection refused", definite=True)
        loop = self.loop
        answer: asyncio.Future[T] = loop.create_future()
        calls = self._client_calls.setdefault(node_id, {})
        calls[answer] = None
        back = contextvars.copy_context()
        process = self.processes[node_id]

        def deliver(error: BaseException | None, result: T | None) -> None:
            if answer.done():
                return
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(result)  # type: ignore[arg-type]

        def answered(error: BaseException | None, result: T | None) -> None:
            # the hop back: runs in the node's process, so a node killed mid-call never
            # answers (the client times out, as it would on a real connection)
            latency = self.network.latency(node_id, "client")
            loop.call_later(latency, deliver, error, result, context=back)

        def arrive() -> None:
            if self.processes.get(node_id) != process or self.nodes[node_id] is None:
                return  # it crashed while the request travelled: the kill failed the call
            loop.create_task(_serve(work, node, answered))

        def expire() -> None:
            if not answer.done():
                answer.set_exception(
                    RequestTimeout(f"no answer from {node_id} before the deadline")
                )

        loop.call_later(
            self.network.latency("client", node_id), arrive, context=self.contexts[node_id]
        )
        timer = loop.call_later(timeout_s, expire)
        try:
            return await answer
        finally:
            timer.cancel()
            calls.pop(answer, None)

    async def read_local(self, node_id: str, key: bytes, timeout_s: float = 5.0) -> Record | None:
        return await self.call(node_id, lambda node: node.local_version(key), timeout_s)

    def expositions(self) -> list[Metric]:
        """Every incarnation's metric families, the dead ones' as they died: what a
        scrape's text would parse to, collected without the text (parsing it back cost
        a fifth of a seed's checks)."""
        live = [
            family
            for node in self.nodes.values()
            if node is not None and node.metrics is not None
            for family in node.metrics.registry.collect()
        ]
        return [*self._dead_metrics, *live]


async def _serve(
    work: Callable[[Node], Awaitable[T]],
    node: Node,
    answered: Callable[[BaseException | None, T | None], None],
) -> None:
    """A client call inside the node's process; a cancelled one never answers."""
    try:
        result = await work(node)
    except Exception as exc:
        answered(exc, None)
    else:
        answered(None, result)
