"""One node: coordinates client requests and serves replica messages.

``Node`` composes its parts, each in its own module with its rules: the coordinator side
(``kvstore.node.coordinator``: put/get and their replica rounds), the replica side
(``kvstore.node.replica``: what a peer's messages do here) and hinted handoff
(``kvstore.node.handoff``). This module holds the node itself: its state, its seams to
the world, time and health, heartbeats, status, start and close.

Rules:
- Decisions come from ``kvstore.core``; the node only does the I/O they ask for: local
  engine calls and peer messages.
- Timestamps come from this node's hybrid logical clock; ``clock_offset_us`` lets the
  harness skew it to expose last-writer-wins under clock skew, and exists only in a
  node started with faults enabled (as does every other fault).
- A node whose clock is further than ``max_clock_drift_ms`` from its peers' (estimated
  from heartbeats, ``kvstore.core.clock_guard``) refuses to coordinate writes
  (``CoordinatorRefused``) until it is back within the bound (``clock_problem``).
- Work is bounded: at most ``max_inflight_calls`` client calls are coordinated at
  once, and each peer link holds at most ``max_peer_pending`` unanswered requests (more
  fail at once, not sent).
- Peers the failure detector calls down are never asked; their writes go to fallbacks as
  durable hints (``kvstore.node.handoff``).
- Background work is cancelled in creation order on close, so a simulated node's
  shutdown is deterministic.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from kvstore.config import ClusterConfig
from kvstore.core import consistency
from kvstore.core.clock_guard import ClockGuard
from kvstore.core.epochs import CLEAN_UP, STABLE
from kvstore.core.failure import Membership
from kvstore.core.hlc import HybridClock
from kvstore.core.peer_input import PeerLimits
from kvstore.core.ring import Ring
from kvstore.core.version import Record
from kvstore.net.channel import PLAINTEXT, Dialer
from kvstore.net.faults import FaultRules
from kvstore.net.link import Link, Transport
from kvstore.net.peer import GrpcTransport
from kvstore.node.clock import SYSTEM_CLOCK, Clock, on_thread
from kvstore.node.coordinator import CoordinatorMixin
from kvstore.node.epochs import EpochMixin, Placement
from kvstore.node.fanout import ReadResult, ReplicaReport, WriteResult
from kvstore.node.handoff import HandoffMixin
from kvstore.node.metrics import NodeMetrics
from kvstore.node.replica import ReplicaMixin
from kvstore.node.ring_store import MemoryRingStore, RingStore, open_ring
from kvstore.node.streaming import (
    Dropped,
    Pulled,
    StreamProgress,
    drop_unowned,
    pull,
    scan_chunk,
)
from kvstore.storage.base import Engine
from kvstore.storage.lying import LyingDisk

__all__ = ["Node", "ReadResult", "ReplicaReport", "WriteResult"]


class Node(CoordinatorMixin, ReplicaMixin, HandoffMixin, EpochMixin):
    def __init__(
        self,
        config: ClusterConfig,
        node_id: str,
        engine: Engine,
        *,
        clock_offset_us: int = 0,
        enable_faults: bool = False,
        dialer: Dialer = PLAINTEXT,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        offload: Callable[..., Awaitable[Any]] = on_thread,
        ring_store: RingStore | None = None,
        join: bool = False,
    ) -> None:
        """``transport``, ``clock``, ``offload`` and ``ring_store`` are the node's seams to
        its world: gRPC, real time, threads and (from the server) a file by default; the
        simulator passes its own. ``join``: a node new to a running cluster, which learns
        the ring from it instead of taking the config's as epoch 1."""
        if clock_offset_us and not enable_faults:
            raise ValueError("a clock offset is a fault: it needs enable_faults")
        self.config = config
        self.faults_enabled = enable_faults
        self.id = node_id
        self.me = config.node(node_id)
        self.engine = engine
        self.ring_store = ring_store if ring_store is not None else MemoryRingStore()
        # raises on a changed membership; None: joining, until the cluster teaches it
        self.epochs = open_ring(self.ring_store, config, join=join)
        self.placement = Placement.of(self.epochs.chosen) if self.epochs is not None else None
        self._config_ring = Ring(config.node_ids, config.vnodes)
        self._epoch_lock = asyncio.Lock()
        self._epoch_waiters: list[asyncio.Future[None]] = []
        self.ring_listeners: list[Callable[[], None]] = []  # told when the ring changes
        self.defaults = consistency.Defaults(
            n=config.n,
            r=config.r,
            w=config.w,
            sloppy=config.sloppy,
            read_repair=config.read_repair,
            timeout_ms=config.request_timeout_ms,
            max_timeout_ms=config.max_timeout_ms,
        )
        self.limits = PeerLimits(  # follow() below adds the ring's members
            config.max_key_bytes,
            config.max_value_bytes,
            frozenset(config.node_ids),
            config.max_clock_drift_ms * 1000,
        )
        self.inflight = 0
        self.metrics: NodeMetrics | None = None  # set by the server when it serves them
        self.hints_pending: dict[str, int] = {}  # as of the last handoff tick
        self.clock_guard = ClockGuard(
            len(config.nodes) - 1,
            config.max_clock_drift_ms * 1000,
            fresh_s=max(2.0, 2 * config.failure_detection_ms / 1000),
        )
        self.time = clock
        self.offload = offload
        self.clock = HybridClock(node_id)
        self.clock_offset_us = clock_offset_us
        self.started = clock.monotonic()
        self.counters: collections.Counter[str] = collections.Counter()
        # by source: what the last change streamed into this node
        self.pulled: dict[str, StreamProgress] = {}
        self.faults = FaultRules()
        # The lying disk is a fault of the storage seam: only a node with faults enabled
        # has the wrapper, which lies while ``faults.lying_disk`` says so.
        self.lying_disk: LyingDisk | None = None
        self.base_engine = engine  # under any fault wrapper: what the metrics look at
        if enable_faults:
            self.lying_disk = LyingDisk(engine, lambda: self.faults.lying_disk)
            self.engine = self.lying_disk
        if transport is None:
            transport = GrpcTransport(
                node_id, self.faults, dialer=dialer, max_pending=config.max_peer_pending
            )
        self._transport = transport
        self.links: dict[str, Link] = {
            peer.id: transport.link(peer.id, peer.address, self._heard)
            for peer in config.nodes
            if peer.id != node_id
        }
        # Extension points for services built on the node (anti-entropy): extra replica
        # message handlers (args -> reply payload) and background loops run by start().
        self.replica_ops: dict[str, Callable[[list[Any]], Awaitable[Any]]] = {
            "epoch.get": self.op_epoch_get,
            "stream.scan": lambda args: scan_chunk(self.engine, args, self.limits),
        }
        self.services: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.membership = Membership(
            node_id,
            list(self.links),
            config.heartbeat_interval_ms / 1000,
            config.failure_detection_ms / 1000,
            clock.monotonic(),
        )
        if self.epochs is not None:
            self.follow(self.epochs.chosen)  # links and detectors for every member
        # a list, not a set: close cancels in creation order (determinism); pruned of
        # finished tasks now and then rather than by a done-callback on every task
        self._background: list[asyncio.Future[Any]] = []
        self._loops: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------- time & health

    @property
    def ring(self) -> Ring:
        """The ring reads use (and anti-entropy): the config's while joining."""
        return self.placement.read_ring if self.placement is not None else self._config_ring

    def physical_us(self) -> int:
        return self.time.wall_us() + self.clock_offset_us

    async def start(self) -> None:
        """Start the node's background work; the gRPC server is already serving."""
        self._loops = [
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._handoff(), name="handoff"),
        ]
        self._loops += [asyncio.create_task(service()) for service in self.services]

    def down(self) -> frozenset[str]:
        """Peers the failure detector calls down right now (never contacted on a request)."""
        return self.membership.down(self.time.monotonic())

    def _heard(self, peer: str, epoch: int | None = None) -> None:
        """``peer`` answered; ``epoch``: the ring epoch its answer names (every reply
        carries the replica's), learnt from that peer when newer than this node's."""
        self.membership.heard(peer, self.time.monotonic())
        if epoch is not None:
            self.heard_epoch(peer, epoch)

    async def _heartbeats(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            for peer, link in self.links.items():
                ping = link.request(["p", self.id, self.epoch], interval * 4)
                ping.add_done_callback(functools.partial(self._pong, peer, self.physical_us()))
            await asyncio.sleep(interval)

    async def pull_ranges(
        self,
        source: str,
        ranges: list[tuple[int, int]],
        after: bytes | None,
        rate_keys_s: float,
        budget_s: float,
    ) -> Pulled:
        """Stream ``ranges`` from ``source`` into this node (``kvstore.node.streaming``)."""
        link = self.links.get(source)
        if link is None:
            raise ValueError(f"{source} is not a node this one knows")

        epoch = self.epoch
        if any(p.epoch != epoch for p in self.pulled.values()):
            self.pulled = {}  # a later change: the last one's progress is history
        if after is None or source not in self.pulled:  # a stream (re)started
            self.pulled[source] = StreamProgress(source, epoch)
        progress = self.pulled[source]

        async def store(records: list[Record]) -> int:
            if "membership-no-stream" in self.faults.planted:  # a planted bug: lost chunks
                return 0
            stored = sum(await self.engine.apply_many(records))
            self.counters["stream.keys_stored"] += stored
            progress.keys += len(records)
            progress.bytes += sum(len(r.key) + len(r.value or b"") for r in records)
            return stored

        got = await pull(
            link,
            ranges,
            after,
            limits=self.limits,
            store=store,
            observe=self.observe_peer_ts,
            rate_keys_s=rate_keys_s,
            budget_s=budget_s,
            sleep=asyncio.sleep,
            now=self.time.monotonic,
        )
        progress.done = got.next is None
        return got

    async def clean_up(self) -> Dropped:
        """Drop the keys the ring no longer gives this node (``drop_unowned``): only in
        the ``clean-up`` phase, when every node reads and writes the new ring only, or
        on a stable ring."""
        record = self.epochs.chosen if self.epochs is not None else None
        if record is None or record.phase not in (STABLE, CLEAN_UP) or self.placement is None:
            raise ValueError(
                f"{self.id} is {'joining' if record is None else f'in phase {record.phase}'}: "
                f"copies are dropped only in the clean-up phase of a change (or when stable)"
            )
        epoch = record.epoch
        got = await drop_unowned(
            self.engine, self.id, self.placement.read_ring, record.n, lambda: self.epoch == epoch
        )
        self.counters["cleanup.dropped"] += got.dropped
        return got

    def clock_problem(self) -> str | None:
        """Why this node must not make timestamps now, or None: its physical clock is
        too far from its peers', or its hybrid clock ran ahead of real time (say, while
        its clock was wrong) by more than peers accept."""
        problem = self.clock_guard.problem(self.time.monotonic())
        if problem is not None:
            return problem
        ahead = self.clock.wall - self.physical_us()
        if ahead > self.limits.max_drift_us:
            return (
                f"this node's hybrid clock is {ahead / 1000:.0f} ms ahead of its physical "
                f"clock (max_clock_drift_ms={self.limits.max_drift_us // 1000}): it "
                f"coordinates writes again once real time catches up"
            )
        return None

    def _pong(self, peer: str, sent_us: int, future: asyncio.Future[Any]) -> None:
        """A heartbeat's answer: the peer's clock, for this node's offset estimate."""
        if future.cancelled() or future.exception() is not None:
            return
        answer = future.result()
        if isinstance(answer, list) and len(answer) in (2, 3) and type(answer[1]) is int:
            now = self.time.monotonic()
            self.clock_guard.sample(peer, sent_us, self.physical_us(), answer[1], now)
            if len(answer) == 3 and type(answer[2]) is int:
                self.heard_epoch(peer, answer[2])

    # ----------------------------------------------------------- background tasks

    def _spawn(self, coro: Any) -> None:
        if len(self._background) >= 1024:
            self._background = [t for t in self._background if not t.done()]
        self._background.append(asyncio.ensure_future(coro))

    # ---------------------------------------------------------------------- admin

    async def status(self) -> dict[str, Any]:
        views = self.membership.views(self.time.monotonic())
        return {
            "node": self.id,
            "cluster": self.config.name,
            "address": self.me.address,
            "pid": os.getpid(),
            "faults_enabled": self.faults_enabled,
            "clock_offset_us": self.clock_guard.offset_us(self.time.monotonic()),
            "uptime_s": self.time.monotonic() - self.started,
            "keys": await self.engine.count(),
            "counters": {
                **self.counters,
                **(
                    {"lying_disk.writes": self.lying_disk.held_writes}
                    if self.lying_disk is not None and self.lying_disk.held_writes
                    else {}
                ),
                # batching on the replica streams: messages per frame is what pays
                "replica.frames_out": sum(link.frames_sent for link in self.links.values()),
                "replica.messages_out": sum(link.messages_sent for link in self.links.values()),
                "replica.refused_full": sum(link.refused_full for link in self.links.values()),
            },
            "peers": [
                {
                    "node": v.node,
                    "state": v.state,
                    "phi": v.phi,
                    "last_heard_s": v.last_heard_s,
                    "heard": v.heard,
                }
                for v in views
            ],
            "hints_pending": await self.engine.hint_counts(),
            "ring": {
                "members": list(self.epochs.chosen.members) if self.epochs else [],
                "target": list(self.epochs.chosen.target or ()) if self.epochs else [],
                "phase": self.epochs.chosen.phase if self.epochs else "joining",
                "n": self.config.n,
                "vnodes": self.config.vnodes,
                "epoch": self.epoch,
            },
            "streams": [dataclasses.asdict(p) for _, p in sorted(self.pulled.items())],
        }

    async def close_links(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for link in self.links.values():
            await link.close()

    async def close(self) -> None:
        await self.close_links()
        for task in self._background:
            task.cancel()
        await self.engine.close()
