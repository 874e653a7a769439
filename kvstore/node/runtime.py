"""One node: coordinates client requests and serves replica messages.

Rules:
- Decisions come from ``kvstore.core`` (plan, quorum rounds, read resolution); this
  module only does the I/O they ask for: local engine calls and peer messages.
- A coordinator never blocks the loop and never waits past the call's timeout: replica
  futures report into a round through callbacks, and the call waits on one future.
- Replica work still in flight when a round is decided carries on in the background
  (a write keeps spreading to the remaining replicas, as Dynamo's does).
- Timestamps come from this node's hybrid logical clock; ``clock_offset_us`` lets the
  harness skew it to expose last-writer-wins under clock skew, and exists only in a
  node started with faults enabled (as does every other fault).
- Everything a peer sends is validated before use (``kvstore.core.peer_input``); a
  timestamp further ahead than ``max_clock_drift_ms`` is refused and counted
  (``replica.refused_clock``), so no peer can push this node's clock ahead. A bad
  message gets an error reply; the stream and the node carry on.
- A node whose clock is further than ``max_clock_drift_ms`` from its peers' (estimated
  from heartbeats, ``kvstore.core.clock_guard``) refuses to coordinate writes
  (``CoordinatorRefused``, definite: the client tries another coordinator) until it is
  back within the bound; reads still work.
- Work is bounded: at most ``max_inflight_calls`` client calls are coordinated at
  once (more are refused with ``Overloaded`` before any work), and each peer link holds
  at most ``max_peer_pending`` unanswered requests (more fail at once, not sent).
- Peers the failure detector calls down are never asked; their writes go to fallbacks as
  durable hints, replayed (throttled, oldest first, original timestamps kept) once the
  owner is seen up, and deleted only after the owner acknowledged them. Hints older
  than the hint window are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kvstore.config import ClusterConfig
from kvstore.core import consistency
from kvstore.core.clock_guard import ClockGuard
from kvstore.core.coordinator import ReadRound, Reply, WriteRound, contact_order, plan
from kvstore.core.failure import Membership
from kvstore.core.hlc import HybridClock
from kvstore.core.keys import as_key, as_value
from kvstore.core.peer_input import ClockDriftError, PeerInputError, PeerLimits
from kvstore.core.quorum import Outcome
from kvstore.core.ring import Replica, Ring
from kvstore.core.version import Record, Timestamp, newer
from kvstore.errors import CoordinatorRefused, KVError, Overloaded
from kvstore.net import replica_codec
from kvstore.net.channel import PLAINTEXT, Dialer
from kvstore.net.faults import FaultRules
from kvstore.net.link import Link, PeerError, Transport
from kvstore.net.peer import GrpcTransport
from kvstore.node.clock import SYSTEM_CLOCK, Clock, on_thread
from kvstore.node.metrics import NodeMetrics
from kvstore.storage.base import Engine

# Replica requests outlive their call by this much, so that the call's own deadline, not
# a replica request expiring at the same instant, decides how a slow call fails
# (RequestTimeout, which says how many answered, rather than a QuorumFailed).
REPLICA_GRACE_S = 0.05
TRACE_GRACE_S = 0.25
HANDOFF_TICK_S = 0.1
EXPIRY_EVERY_S = 1.0
log = logging.getLogger("kvstore.node")


@dataclass(slots=True)
class ReplicaReport:
    """What one replica did for a call (consistency tracing)."""

    node: str
    ok: bool
    fallback: bool
    record: Record | None = None
    error: str = ""


@dataclass(slots=True)
class WriteResult:
    ts: Timestamp
    replicas: list[ReplicaReport] = field(default_factory=list)


@dataclass(slots=True)
class ReadResult:
    record: Record | None  # the winner, tombstones included
    replicas: list[ReplicaReport] = field(default_factory=list)


RoundT = TypeVar("RoundT", WriteRound, ReadRound)


class _Fanout(Generic[RoundT]):
    """One round of replica requests in flight: the core's round plus the I/O around it."""

    __slots__ = ("decided", "futures", "reports", "round", "spare", "targets")

    def __init__(self, round_: RoundT, targets: list[Replica]) -> None:
        self.round: RoundT = round_
        self.targets = targets
        self.decided: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures: list[asyncio.Future[Any]] = []
        self.reports: list[ReplicaReport] = []
        self.spare: list[Replica] = []  # a targeted read's replicas not asked yet


class _Deadline:
    """One call's time budget, shared by all its rounds (ABD has two)."""

    __slots__ = ("clock", "end", "timeout_ms")

    def __init__(self, timeout_ms: int, clock: Clock) -> None:
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.end = clock.monotonic() + timeout_ms / 1000

    def left(self) -> float:
        return max(0.001, self.end - self.clock.monotonic())


class Node:
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
    ) -> None:
        """``transport``, ``clock`` and ``offload`` are the node's seams to its world:
        gRPC, real time and threads by default; the simulator passes its own."""
        if clock_offset_us and not enable_faults:
            raise ValueError("a clock offset is a fault: it needs enable_faults")
        self.config = config
        self.faults_enabled = enable_faults
        self.id = node_id
        self.me = config.node(node_id)
        self.engine = engine
        self.ring = Ring(config.node_ids, config.vnodes)
        self.defaults = consistency.Defaults(
            n=config.n,
            r=config.r,
            w=config.w,
            sloppy=config.sloppy,
            read_repair=config.read_repair,
            timeout_ms=config.request_timeout_ms,
            max_timeout_ms=config.max_timeout_ms,
        )
        self.limits = PeerLimits(
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
        self.faults = FaultRules()
        if transport is None:
            transport = GrpcTransport(
                node_id, self.faults, dialer=dialer, max_pending=config.max_peer_pending
            )
        self.links: dict[str, Link] = {
            peer.id: transport.link(peer.id, peer.address, self._heard)
            for peer in config.nodes
            if peer.id != node_id
        }
        # Extension points for services built on the node (anti-entropy): extra replica
        # message handlers (args -> reply payload) and background loops run by start().
        self.volatile: dict[bytes, Record] = {}  # writes held by a lying disk
        self.replica_ops: dict[str, Callable[[list[Any]], Awaitable[Any]]] = {}
        self.services: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.membership = Membership(
            node_id,
            list(self.links),
            config.heartbeat_interval_ms / 1000,
            config.failure_detection_ms / 1000,
            clock.monotonic(),
        )
        # a dict, not a set: crash and close cancel in creation order (determinism)
        self._background: dict[asyncio.Future[Any], None] = {}
        self._loops: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------- time & health

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

    def _heard(self, peer: str) -> None:
        self.membership.heard(peer, self.time.monotonic())

    async def _heartbeats(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            for peer, link in self.links.items():
                ping = link.request(["p", self.id], interval * 4)
                ping.add_done_callback(functools.partial(self._pong, peer, self.physical_us()))
            await asyncio.sleep(interval)

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
        if isinstance(answer, list) and len(answer) == 2 and type(answer[1]) is int:
            now = self.time.monotonic()
            self.clock_guard.sample(peer, sent_us, self.physical_us(), answer[1], now)

    # ------------------------------------------------------------- hinted handoff

    async def _handoff(self) -> None:
        last_expiry = 0.0
        while True:
            await asyncio.sleep(HANDOFF_TICK_S)
            try:
                if self.time.monotonic() - last_expiry >= EXPIRY_EVERY_S:
                    last_expiry = self.time.monotonic()
                    await self.expire_hints()
                await self.replay_hints(max(1, int(self.config.hint_replay_rate * HANDOFF_TICK_S)))
            except Exception:  # a failing tick must not end handoff for good
                log.exception("hinted handoff tick failed")

    async def expire_hints(self) -> int:
        """Drop hints older than the hint window; anti-entropy repairs what they covered."""
        window_us = int(self.config.hint_window_s * 1_000_000)
        dropped = 0
        while True:
            now = self.physical_us()
            oldest = await self.engine.hints(None, limit=500)
            expired = [h.hint_id for h in oldest if now - h.stored_at_us > window_us]
            if expired:
                await self.engine.delete_hints(expired)
                dropped += len(expired)
                self.counters["hints.dropped"] += len(expired)
            if len(expired) < len(oldest) or len(oldest) < 500:
                return dropped

    async def replay_hints(self, budget: int) -> int:
        """Send up to ``budget`` hints to owners seen up; delete the acknowledged ones."""
        delivered_total = 0
        now = self.time.monotonic()
        counts = await self.engine.hint_counts()
        self.hints_pending = counts  # for the metrics, read without the loop
        for owner, pending in sorted(counts.items()):
            link = self.links.get(owner)
            if budget <= 0 or pending == 0 or link is None:
                continue
            if not self.membership.is_up(owner, now):
                continue
            hints = await self.engine.hints(owner, limit=budget)
            timeout_s = self.config.request_timeout_ms / 1000
            replies = await asyncio.gather(
                *(link.request(replica_codec.write_args(h.record, None), timeout_s) for h in hints),
                return_exceptions=True,
            )
            delivered = [
                h.hint_id
                for h, reply in zip(hints, replies, strict=True)
                if not isinstance(reply, BaseException)
            ]
            if delivered:
                await self.engine.delete_hints(delivered)
                self.counters["hints.delivered"] += len(delivered)
            budget -= len(hints)
            delivered_total += len(delivered)
        return delivered_total

    # ------------------------------------------------------------------ coordinator

    def level_label(self, call: consistency.CallOptions, read: bool) -> str:
        """A call's consistency as a bounded metrics label."""
        try:
            opts = consistency.resolve(call, self.defaults)
        except KVError:
            return "invalid"
        if opts.linearizable:
            return "linearizable"
        return f"r{opts.r}" if read else f"w{opts.w}"

    @contextlib.contextmanager
    def admitted(self, op: str) -> Iterator[None]:
        """Hold one of the node's ``max_inflight_calls`` slots for a client call."""
        if self.inflight >= self.config.max_inflight_calls:
            self.counters[f"{op}.overloaded"] += 1
            raise Overloaded(
                f"{self.id} is coordinating {self.inflight} calls (max_inflight_calls="
                f"{self.config.max_inflight_calls}); nothing was done, retry later"
            )
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    def _prepare(
        self, op: str, key: object, call: consistency.CallOptions, read: bool
    ) -> tuple[consistency.Resolved, bytes, list[Replica]]:
        """Validate a call and plan its targets; count a refusal under ``op``."""
        try:
            opts = consistency.resolve(call, self.defaults)
            key_bytes = as_key(key, self.config.max_key_bytes)
            needed = opts.r if read else opts.w
            targets = plan(
                self.ring, key_bytes, self.config.n, needed, opts.sloppy, self.down(), op
            )
        except KVError as exc:
            self.counters[f"{op}.{exc.code}"] += 1
            raise
        return opts, key_bytes, targets

    async def put(
        self,
        key: object,
        value: object | None,
        call: consistency.CallOptions,
        *,
        trace: bool = False,
    ) -> WriteResult:
        """Coordinate a write (``value`` None: a delete, i.e. a tombstone)."""
        op = "put" if value is not None else "delete"
        try:
            value_bytes = None if value is None else as_value(value, self.config.max_value_bytes)
            problem = self.clock_problem()
            if problem is not None:
                raise CoordinatorRefused(problem)
        except KVError as exc:
            self.counters[f"{op}.{exc.code}"] += 1
            raise
        opts, key_bytes, targets = self._prepare(op, key, call, read=False)
        deadline = _Deadline(opts.timeout_ms, self.time)
        if opts.linearizable and "abd-no-query" not in self.faults.planted:
            # ABD phase 1: learn the highest timestamp a quorum holds, and write above it,
            # so this write orders after every write that completed before it began,
            # whatever the clocks say.
            query = self._fan_out_read(targets, key_bytes, opts.w, False, deadline)
            await self._await_round(query.decided, query.round, deadline, op, count_ok=False)
            highest = query.round.resolution().winner
            if highest is not None:
                self.clock.observe(highest.ts, self.physical_us())
        record = Record(key_bytes, value_bytes, self.clock.now(self.physical_us()))
        write = self._fan_out_write(targets, record, opts.w, opts.sloppy, deadline)
        await self._await_round(write.decided, write.round, deadline, op)
        if trace:
            await self._settle(write, TRACE_GRACE_S, report=True)
        return WriteResult(record.ts, write.reports)

    async def get(
        self, key: object, call: consistency.CallOptions, *, trace: bool = False
    ) -> ReadResult:
        opts, key_bytes, targets = self._prepare("get", key, call, read=True)
        deadline = _Deadline(opts.timeout_ms, self.time)
        # Repair, tracing and ABD need every replica's answer; a plain read needs R.
        targeted = not (trace or opts.linearizable or opts.read_repair != "off")
        read = self._fan_out_read(
            targets, key_bytes, opts.r, opts.sloppy, deadline, targeted=targeted
        )
        await self._await_round(read.decided, read.round, deadline, "get", count_ok=False)
        winner = read.round.resolution().winner
        if opts.linearizable:
            if winner is not None and "abd-no-write-back" not in self.faults.planted:
                await self._write_back(read, winner, opts.r, deadline)
        elif opts.read_repair == "blocking":
            await self._read_repair(read, "blocking", deadline)
        elif opts.read_repair == "async":
            # the reply goes now; the repair (and its wait for late replies) after it
            self._spawn(self._read_repair(read, "async", deadline))
        self.counters["get.ok"] += 1
        if trace:
            await self._settle(read, TRACE_GRACE_S, report=True)
        return ReadResult(winner, read.reports)

    async def _read_repair(self, read: _Fanout[ReadRound], mode: str, deadline: _Deadline) -> None:
        """Write the newest version to the primaries that answered with an older one.

        First the replicas beyond R get ``read_repair_wait_ms`` to answer, so that the
        repair sees them too. Blocking mode waits for the repair writes (bounded by the
        call's deadline); async mode runs all of this after the reply was sent.
        """
        await self._settle(read, self.config.read_repair_wait_ms / 1000)
        resolution = read.round.resolution()
        winner = resolution.winner
        stale = [t for t in read.targets if t.primary and t.node in resolution.stale]
        if winner is None or not stale:
            return
        repairs = self._fan_out_write(stale, winner, len(stale), False, deadline)
        self.counters[f"read_repair.{mode}"] += len(stale)
        if mode == "blocking":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(repairs.decided), deadline.left())
        else:
            await asyncio.wait(repairs.futures, timeout=deadline.left())

    async def _write_back(
        self, read: _Fanout[ReadRound], winner: Record, quorum: int, deadline: _Deadline
    ) -> None:
        """ABD phase 2 of a read: make sure a quorum holds ``winner`` before answering.

        Without it, a read that saw a write on one replica could be followed by a read
        that misses it: new-then-old, which a linearizable register never shows.
        """
        holders = {n for n, r in read.round.replies.items() if r is not None and r.ts >= winner.ts}
        missing = quorum - len(holders)
        if missing <= 0:
            return
        others = [t for t in read.targets if t.primary and t.node not in holders]
        self.counters["read_repair.linearizable"] += len(others)
        back = self._fan_out_write(others, winner, missing, False, deadline)
        await self._await_round(back.decided, back.round, deadline, "get", count_ok=False)

    def _fan_out_write(
        self,
        targets: list[Replica],
        record: Record,
        w: int,
        sloppy: bool,
        deadline: _Deadline,
    ) -> _Fanout[WriteRound]:
        fan: _Fanout[WriteRound] = _Fanout(WriteRound(targets, w, sloppy), targets)
        timeout_s = deadline.left() + REPLICA_GRACE_S
        for target in targets:
            if target.node == self.id:
                future: asyncio.Future[Any] = asyncio.ensure_future(
                    self.apply_local(record, target.hint_for)
                )
            else:
                future = self.links[target.node].request(
                    replica_codec.write_args(record, target.hint_for), timeout_s
                )
            future.add_done_callback(functools.partial(self._on_write, fan, target))
            if self.metrics is not None and target.node != self.id:
                future.add_done_callback(self.metrics.round_trip("write", target.node))
            fan.futures.append(future)
        return fan

    def _fan_out_read(
        self,
        targets: list[Replica],
        key: bytes,
        r: int,
        sloppy: bool,
        deadline: _Deadline,
        *,
        targeted: bool = False,
    ) -> _Fanout[ReadRound]:
        """Ask the replicas for ``key``: all of them, or (``targeted``) R of them first.

        A targeted read asks the others when one of its first R fails, and all of them
        once ``speculative_read_ms`` passed without the round decided (Cassandra's
        speculative retry), so a slow or dead replica costs at most that much.
        """
        fan: _Fanout[ReadRound] = _Fanout(ReadRound(targets, r, sloppy), targets)
        first = targets
        if targeted and self.config.speculative_read_ms > 0:
            order = contact_order(targets, self.id, sloppy)
            first, fan.spare = order[:r], order[r:]
        for target in first:
            self._ask(fan, target, key, deadline)
        if fan.spare:
            delay = self.config.speculative_read_ms / 1000
            handle = asyncio.get_running_loop().call_later(
                delay, self._ask_spares, fan, key, deadline, "read.speculative"
            )
            fan.decided.add_done_callback(lambda _: handle.cancel())
        return fan

    def _ask(
        self, fan: _Fanout[ReadRound], target: Replica, key: bytes, deadline: _Deadline
    ) -> None:
        if target.node == self.id:
            future: asyncio.Future[Any] = asyncio.ensure_future(
                self._read_local(key, target.hint_for)
            )
        else:
            future = self.links[target.node].request(
                replica_codec.read_args(key, target.hint_for), deadline.left() + REPLICA_GRACE_S
            )
        future.add_done_callback(functools.partial(self._on_read, fan, target, key, deadline))
        if self.metrics is not None and target.node != self.id:
            future.add_done_callback(self.metrics.round_trip("read", target.node))
        fan.futures.append(future)

    def _ask_spares(
        self, fan: _Fanout[ReadRound], key: bytes, deadline: _Deadline, reason: str, count: int = 0
    ) -> None:
        """Ask ``count`` more of a targeted read's spare replicas (0: all of them)."""
        if fan.decided.done() or not fan.spare or self.time.monotonic() >= deadline.end:
            return  # decided, nothing left, or the call is over (its caller has an answer)
        take = len(fan.spare) if count <= 0 else count
        asked, fan.spare = fan.spare[:take], fan.spare[take:]
        self.counters[reason] += len(asked)
        for target in asked:
            self._ask(fan, target, key, deadline)

    async def _settle(self, fan: _Fanout[Any], grace_s: float, *, report: bool = False) -> None:
        """Give replicas beyond R/W ``grace_s`` to answer; with ``report``, list the rest."""
        pending = [f for f in fan.futures if not f.done()]
        if pending and grace_s > 0:
            await asyncio.wait(pending, timeout=grace_s)
        if report:
            answered = {r.node for r in fan.reports}
            for target in fan.targets:
                if target.node not in answered:
                    fan.reports.append(
                        ReplicaReport(target.node, False, not target.primary, error="no reply yet")
                    )

    def _on_write(
        self, fan: _Fanout[WriteRound], target: Replica, future: asyncio.Future[Any]
    ) -> None:
        error = future.exception() if not future.cancelled() else PeerError("cancelled", sent=True)
        if error is None:
            outcome = fan.round.reply(target, Reply.ACK)
            fan.reports.append(ReplicaReport(target.node, True, not target.primary))
        else:
            sent = error.sent if isinstance(error, PeerError) else True
            outcome = fan.round.reply(target, Reply.FAILED if sent else Reply.NOT_SENT)
            fan.reports.append(
                ReplicaReport(target.node, False, not target.primary, error=str(error))
            )
        if outcome is not Outcome.PENDING and not fan.decided.done():
            fan.decided.set_result(None)

    async def _await_round(
        self,
        decided: asyncio.Future[None],
        round_: WriteRound | ReadRound,
        deadline: _Deadline,
        op: str,
        *,
        count_ok: bool = True,
    ) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(decided), deadline.left())
        except TimeoutError:
            self.counters[f"{op}.timeout"] += 1
            raise round_.timeout_error(deadline.timeout_ms) from None
        if round_.tally.outcome is Outcome.FAILED:
            error = round_.error()
            self.counters[f"{op}.{error.code}"] += 1
            raise error
        if count_ok:
            self.counters[f"{op}.ok"] += 1

    def _on_read(
        self,
        fan: _Fanout[ReadRound],
        target: Replica,
        key: bytes,
        deadline: _Deadline,
        future: asyncio.Future[Any],
    ) -> None:
        error = future.exception() if not future.cancelled() else PeerError("cancelled", sent=True)
        if error is None:
            try:
                record = self._peer_record(key, future.result(), target.node)
            except PeerInputError as exc:
                error = PeerError(f"{target.node} answered a bad version: {exc}", sent=True)
        if error is None:
            outcome = fan.round.reply(target, record)
            fan.reports.append(ReplicaReport(target.node, True, not target.primary, record))
        else:
            outcome = fan.round.fail(target, str(error))
            fan.reports.append(
                ReplicaReport(target.node, False, not target.primary, error=str(error))
            )
            if outcome is Outcome.PENDING and fan.spare:
                # a targeted read lost one of its replicas: ask the next one now
                self._ask_spares(fan, key, deadline, "read.replaced", 1)
        if outcome is not Outcome.PENDING and not fan.decided.done():
            fan.decided.set_result(None)

    # --------------------------------------------------------------------- replica

    def _peer_record(self, key: bytes, raw: Any, node: str) -> Record | None:
        """A version a replica answered, validated (its own answer is trusted)."""
        if node == self.id:
            return replica_codec.decode_record(key, raw, self.limits)
        record = replica_codec.decode_record(key, raw, self.limits)
        if record is not None:
            self.check_drift(record.ts)
        return record

    def observe_peer_ts(self, ts: Timestamp) -> None:
        """Merge a peer's timestamp into the clock, unless it is too far ahead."""
        self.check_drift(ts)
        self.clock.observe(ts, self.physical_us())

    def check_drift(self, ts: Timestamp) -> None:
        """Refuse (and count) a timestamp too far ahead of this node's clock."""
        try:
            self.limits.check_drift(ts, self.physical_us())
        except ClockDriftError:
            self.counters["replica.refused_clock"] += 1
            raise

    async def apply_local(self, record: Record, hint_for: str | None) -> bool:
        self.clock.observe(record.ts, self.physical_us())
        if hint_for is not None and hint_for != self.id:
            if self.faults.lose_hints:
                self.counters["hints.lost"] += 1
                return True
            await self.engine.add_hint(hint_for, record, self.physical_us())
            self.counters["hints.stored"] += 1
            return True
        if self.faults.lying_disk:
            return self._lie(record)
        return await self.engine.apply(record)

    def _lie(self, record: Record) -> bool:
        """Acknowledge a write kept only in memory (the lying-disk fault)."""
        held = self.volatile.get(record.key)
        if newer(held, record) is held and held is not None:
            return False
        self.volatile[record.key] = record
        self.counters["lying_disk.writes"] += 1
        return True

    async def stop_lying(self) -> None:
        """The disk stops lying: what it held in memory is written for real."""
        held, self.volatile = list(self.volatile.values()), {}
        if held:
            await self.engine.apply_many(held)

    async def local_version(self, key: bytes) -> Record | None:
        """This node's own version of ``key``, including writes a lying disk holds."""
        return newer(await self.engine.get(key), self.volatile.get(key))

    async def _read_local(self, key: bytes, hint_for: str | None = None) -> list[Any] | None:
        """This node's version of ``key``; as a fallback for ``hint_for``, the newer of
        that and the hints it holds for the owner (which is what it stands in for)."""
        record = await self.local_version(key)
        if hint_for is not None and hint_for != self.id:
            self.counters["replica.fallback_reads"] += 1
            record = newer(record, await self.engine.hinted(hint_for, key))
        return replica_codec.encode_record(record)

    def handle_frame(self, messages: list[list[Any]], reply: Callable[[list[Any]], None]) -> None:
        """Serve one frame of replica requests; replies go to ``reply`` as they are ready.

        Writes of one frame share one engine call (and so one commit); reads likewise.
        """
        writes: list[tuple[int, Record]] = []
        reads: list[tuple[int, bytes]] = []
        for message in messages:
            try:
                if not isinstance(message, list) or len(message) < 2:
                    raise PeerInputError("a message must be a list [rid, op, *args]")
                rid, op, *args = message
                if type(rid) is not int or not 0 <= rid < 1 << 63:
                    raise PeerInputError(f"request id {rid!r} is not a non-negative integer")
                if op == "w":
                    record, hint_for = replica_codec.record_from_write(args, self.limits)
                    self.check_drift(record.ts)
                    if hint_for is not None and hint_for != self.id:
                        self._spawn(self._hint(rid, record, hint_for, reply))
                    else:
                        writes.append((rid, record))
                elif op == "r":
                    key, hint_for = replica_codec.read_request(args, self.limits)
                    if hint_for is not None:  # asked as a fallback
                        self._spawn(self._serve_op(rid, self._fallback_read, args, reply))
                    else:
                        reads.append((rid, key))
                elif op == "p":
                    reply([rid, replica_codec.OK, [self.id, self.physical_us()]])
                elif op in self.replica_ops:
                    self._spawn(self._serve_op(rid, self.replica_ops[op], args, reply))
                else:
                    reply([rid, replica_codec.ERROR, f"unknown op {op!r}"])
            except (ValueError, TypeError) as exc:
                self.counters["replica.malformed"] += 1
                rid = message[0] if isinstance(message, list) and message else 0
                if type(rid) is not int:
                    rid = 0
                why = "refused" if isinstance(exc, ClockDriftError) else "malformed message"
                reply([rid, replica_codec.ERROR, f"{why}: {exc}"])
        if writes:
            self._spawn(self._apply_batch(writes, reply))
        if reads:
            self._spawn(self._read_batch(reads, reply))

    async def _serve_op(
        self,
        rid: int,
        handler: Callable[[list[Any]], Awaitable[Any]],
        args: list[Any],
        reply: Callable[[list[Any]], None],
    ) -> None:
        try:
            result = await handler(args)
        except Exception as exc:
            reply([rid, replica_codec.ERROR, f"{type(exc).__name__}: {exc}"])
        else:
            reply([rid, replica_codec.OK, result])

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._background.pop(task, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background[task] = None
        task.add_done_callback(self._forget)

    async def _apply_batch(
        self, writes: list[tuple[int, Record]], reply: Callable[[list[Any]], None]
    ) -> None:
        now = self.physical_us()
        for _, record in writes:
            self.clock.observe(record.ts, now)
        try:
            if self.faults.lying_disk:
                applied = [self._lie(record) for _, record in writes]
            else:
                applied = await self.engine.apply_many([record for _, record in writes])
        except Exception as exc:
            for rid, _ in writes:
                reply([rid, replica_codec.ERROR, f"storage failed: {exc}"])
            return
        self.counters["replica.writes"] += len(writes)
        for (rid, _), ok in zip(writes, applied, strict=True):
            reply([rid, replica_codec.OK, ok])

    async def _hint(
        self, rid: int, record: Record, owner: str, reply: Callable[[list[Any]], None]
    ) -> None:
        try:
            if self.faults.lose_hints:
                self.counters["hints.lost"] += 1
                reply([rid, replica_codec.OK, True])
                return
            await self.engine.add_hint(owner, record, self.physical_us())
        except Exception as exc:
            reply([rid, replica_codec.ERROR, f"storage failed: {exc}"])
            return
        self.counters["hints.stored"] += 1
        reply([rid, replica_codec.OK, True])

    async def _fallback_read(self, args: list[Any]) -> list[Any] | None:
        key, owner = args[0], args[1]
        return await self._read_local(key, owner)

    async def _read_batch(
        self, reads: list[tuple[int, bytes]], reply: Callable[[list[Any]], None]
    ) -> None:
        try:
            records = await self.engine.get_many([key for _, key in reads])
            if self.volatile:
                records = [
                    newer(r, self.volatile.get(key))
                    for r, (_, key) in zip(records, reads, strict=True)
                ]
        except Exception as exc:
            for rid, _ in reads:
                reply([rid, replica_codec.ERROR, f"storage failed: {exc}"])
            return
        self.counters["replica.reads"] += len(reads)
        for (rid, _), record in zip(reads, records, strict=True):
            reply([rid, replica_codec.OK, replica_codec.encode_record(record)])

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
                # batching on the replica streams: messages per frame is what pays
                "replica.frames_out": sum(link.frames_sent for link in self.links.values()),
                "replica.messages_out": sum(link.messages_sent for link in self.links.values()),
                "replica.refused_full": sum(link.refused_full for link in self.links.values()),
            },
            "peers": [
                {"node": v.node, "state": v.state, "phi": v.phi, "last_heard_s": v.last_heard_s}
                for v in views
            ],
            "hints_pending": await self.engine.hint_counts(),
        }

    async def close_links(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for link in self.links.values():
            await link.close()

    async def close(self) -> None:
        await self.close_links()
        for task in list(self._background):
            task.cancel()
        await self.engine.close()
