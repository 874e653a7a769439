"""The coordinator side of a node: a client call's put or get, fanned out to replicas.

Rules:
- Decisions come from ``kvstore.core.coordinator`` (plan, quorum rounds, read
  resolution, which replicas a repair or an ABD write-back writes to); this module only
  sends what they ask for and feeds the replies back.
- A coordinator never blocks the loop and never waits past the call's timeout: replica
  futures report into a round through callbacks, and the call waits on one future.
- Replica work still in flight when a round is decided carries on in the background
  (a write keeps spreading to the remaining replicas, as Dynamo's does).
- A node whose clock is further than ``max_clock_drift_ms`` from its peers' refuses to
  coordinate writes (``CoordinatorRefused``, definite: the client tries another
  coordinator) until it is back within the bound; reads still work.
- At most ``max_inflight_calls`` client calls are coordinated at once; more are refused
  with ``Overloaded`` before any work.
- Peers the failure detector calls down are never asked (``plan`` leaves them out).
- Every replica request carries the ring epoch its targets were placed with. When a
  replica refuses one for an older epoch (``StaleEpoch``), the coordinator learns the
  newer ring and runs the call again on it (a write with the same version, once one was
  sent); only if it cannot learn it in the call's time does the attempt's outcome stand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from kvstore.config import ClusterConfig
from kvstore.core import consistency
from kvstore.core.coordinator import (
    MultiWriteRound,
    ReadRound,
    Reply,
    WriteRound,
    merge_targets,
    plan,
    read_repair_targets,
    targeted_split,
    write_back,
)
from kvstore.core.hlc import HybridClock
from kvstore.core.keys import as_key, as_value
from kvstore.core.peer_input import PeerInputError
from kvstore.core.quorum import Outcome
from kvstore.core.ring import Replica
from kvstore.core.version import Record
from kvstore.errors import CoordinatorRefused, KVError, Overloaded, Unavailable
from kvstore.net import replica_codec
from kvstore.net.faults import FaultRules
from kvstore.net.link import Link, PeerError, StaleEpoch
from kvstore.node.clock import Clock
from kvstore.node.fanout import (
    REPLICA_GRACE_S,
    TRACE_GRACE_S,
    Deadline,
    Fanout,
    ReadResult,
    ReplicaReport,
    T,
    WriteFan,
    WriteResult,
)
from kvstore.node.metrics import NodeMetrics

if TYPE_CHECKING:
    from kvstore.node.epochs import Placement


class _RunAgain(Exception):
    """An attempt stopped before it wrote anything: this node learnt a newer ring."""


class CoordinatorMixin:
    """``Node``'s coordinator methods; the state they use is the node's (declared here)."""

    config: ClusterConfig
    id: str
    placement: Placement | None
    defaults: consistency.Defaults
    inflight: int
    metrics: NodeMetrics | None
    time: Clock
    clock: HybridClock
    faults: FaultRules
    links: dict[str, Link]
    counters: collections.Counter[str]

    if TYPE_CHECKING:  # the node's own, and the replica side's

        def physical_us(self) -> int: ...
        def clock_problem(self) -> str | None: ...
        def down(self) -> frozenset[str]: ...
        def _spawn(self, coro: Any) -> None: ...
        def _peer_record(self, key: bytes, raw: Any, node: str) -> Record | None: ...
        async def apply_local(self, record: Record, hint_for: str | None) -> bool: ...
        async def _read_local(
            self, key: bytes, hint_for: str | None = None
        ) -> list[Any] | None: ...
        async def learnt_epoch(self, epoch: int, peer: str, timeout_s: float) -> bool: ...
        async def copy_to(self, record: Record, targets: set[str]) -> bool: ...
        def older_placement(self, epoch: int | None) -> str | None: ...
        @property
        def epoch(self) -> int: ...

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
    ) -> tuple[consistency.Resolved, bytes, list[Replica], list[list[Replica]] | None, int]:
        """Validate a call and plan its targets; count a refusal under ``op``.

        The targets are the read ring's; for a write during a membership change, also
        the targets of each ring it must reach W in (None: the read ring's alone); last,
        the ring epoch they were placed with."""
        try:
            placement = self.placement
            if placement is None:
                raise Unavailable(f"{self.id} is joining the cluster: it coordinates nothing yet")
            opts = consistency.resolve(call, self.defaults)
            if not read and "strict-counts-fallbacks" in self.faults.planted:
                # a planted bug: strict writes plan and count fallbacks as sloppy ones do
                opts = dataclasses.replace(opts, sloppy=True)
            key_bytes = as_key(key, self.config.max_key_bytes)
            needed = opts.r if read else opts.w
            down = self.down()
            n = self.config.n
            targets = plan(placement.read_ring, key_bytes, n, needed, opts.sloppy, down, op)
            groups = None
            if not read and len(placement.write_rings) > 1:
                groups = [
                    plan(ring, key_bytes, n, needed, opts.sloppy, down, op)
                    for ring in placement.write_rings
                ]
        except KVError as exc:
            self.counters[f"{op}.{exc.code}"] += 1
            raise
        return opts, key_bytes, targets, groups, placement.record.epoch

    async def _again_on_newer_ring(self, deadline: Deadline, op: str) -> bool:
        """After an attempt a replica refused for its older ring epoch: True once this
        node has learnt that epoch (the call then runs again on it, from the start); False
        when nothing was refused, or the epoch was not learnt in the call's time (the
        attempt's own outcome stands: what it reached, it reached on replicas that agree
        with its ring)."""
        refused, deadline.refused = deadline.refused, None
        if refused is None:
            return False
        epoch, peer = refused
        self.counters[f"{op}.fenced"] += 1
        return await self.learnt_epoch(epoch, peer, deadline.end - self.time.monotonic())

    async def _on_current_ring(
        self,
        op: str,
        key: object,
        call: consistency.CallOptions,
        read: bool,
        attempt: Callable[
            [consistency.Resolved, bytes, list[Replica], list[list[Replica]] | None, Deadline],
            Awaitable[T],
        ],
    ) -> T:
        """Run a call's ``attempt`` on the targets this node's ring gives, and again,
        from the start, each time a replica refused it for an older ring epoch that this
        node has learnt since (``_again_on_newer_ring``); every attempt shares the first
        one's deadline. An attempt that raises ``_RunAgain`` has learnt already."""
        deadline: Deadline | None = None
        while True:
            opts, key_bytes, targets, groups, epoch = self._prepare(op, key, call, read)
            if deadline is None:
                deadline = Deadline(opts.timeout_ms, self.time)
            deadline.epoch = epoch
            try:
                result = await attempt(opts, key_bytes, targets, groups, deadline)
            except _RunAgain:
                continue
            except KVError:
                if await self._again_on_newer_ring(deadline, op):
                    continue
                raise
            if not await self._again_on_newer_ring(deadline, op):
                return result

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
        # Once sent, every attempt writes this same version: a refused attempt may have
        # reached some replicas, and a second version of the value could be read on
        # both sides of another write (v, u, v: not linearizable).
        record: Record | None = None

        async def attempt(
            opts: consistency.Resolved,
            key_bytes: bytes,
            targets: list[Replica],
            groups: list[list[Replica]] | None,
            deadline: Deadline,
        ) -> WriteFan:
            nonlocal record
            if record is None:
                await self._abd_query(opts, key_bytes, targets, deadline, op)
                if await self._again_on_newer_ring(deadline, op):
                    raise _RunAgain  # nothing written yet: ask again on the newer ring
                record = Record(key_bytes, value_bytes, self.clock.now(self.physical_us()))
            write = self._fan_out_write(targets, record, opts.w, opts.sloppy, deadline, groups)
            await self._await_round(write.decided, write.round, deadline, op)
            return write

        write = await self._on_current_ring(op, key, call, False, attempt)
        assert record is not None
        if trace:
            await self._settle(write, TRACE_GRACE_S, report=True)
        return WriteResult(record.ts, write.reports)

    async def _abd_query(
        self,
        opts: consistency.Resolved,
        key_bytes: bytes,
        targets: list[Replica],
        deadline: Deadline,
        op: str,
    ) -> None:
        """ABD phase 1 of a linearizable write: learn the highest timestamp a quorum
        holds, and write above it, so the write orders after every write that completed
        before it began, whatever the clocks say."""
        if not opts.linearizable or "abd-no-query" in self.faults.planted:
            return
        # any quorum's highest timestamp will do: ask W replicas first, as a plain read
        query = self._fan_out_read(targets, key_bytes, opts.w, False, deadline, targeted=True)
        await self._await_round(query.decided, query.round, deadline, op, count_ok=False)
        highest = query.round.resolution().winner
        if highest is not None:
            self.clock.observe(highest.ts, self.physical_us())

    async def get(
        self, key: object, call: consistency.CallOptions, *, trace: bool = False
    ) -> ReadResult:
        async def attempt(
            opts: consistency.Resolved,
            key_bytes: bytes,
            targets: list[Replica],
            _: list[list[Replica]] | None,
            deadline: Deadline,
        ) -> ReadResult:
            return await self._get_once(opts, key_bytes, targets, deadline, trace)

        result = await self._on_current_ring("get", key, call, True, attempt)
        self.counters["get.ok"] += 1
        return result

    async def _get_once(
        self,
        opts: consistency.Resolved,
        key_bytes: bytes,
        targets: list[Replica],
        deadline: Deadline,
        trace: bool,
    ) -> ReadResult:
        # Repair and tracing need every replica's answer. A plain read needs R, and so
        # does ABD's: it answers what a quorum holds (writing it back to the replicas of
        # a quorum that lack it, the ones not asked included), whichever quorum it is.
        targeted = not (trace or opts.read_repair != "off")
        read = self._fan_out_read(
            targets, key_bytes, opts.r, opts.sloppy, deadline, targeted=targeted
        )
        await self._await_round(read.decided, read.round, deadline, "get", count_ok=False)
        winner = read.round.resolution().winner
        if "first-reply-wins" in self.faults.planted:  # a planted bug: no resolution at all
            winner = next((r.record for r in read.reports if r.ok), winner)
        if opts.linearizable:
            if winner is not None and "abd-no-write-back" not in self.faults.planted:
                await self._write_back(read, winner, opts.r, deadline)
        elif opts.read_repair == "blocking":
            await self._read_repair(read, "blocking", deadline)
        elif opts.read_repair == "async":
            # the reply goes now; the repair (and its wait for late replies) after it, on
            # this attempt's ring even if the call runs again on a newer one
            self._spawn(self._read_repair(read, "async", deadline.pinned()))
        if trace:
            await self._settle(read, TRACE_GRACE_S, report=True)
        return ReadResult(winner, read.reports)

    async def _read_repair(self, read: Fanout[ReadRound], mode: str, deadline: Deadline) -> None:
        """Write the newest version to the primaries that answered with an older one.

        First the replicas beyond R get ``read_repair_wait_ms`` to answer, so that the
        repair sees them too. Blocking mode waits for the repair writes (bounded by the
        call's deadline); async mode runs all of this after the reply was sent.
        """
        await self._settle(read, self.config.read_repair_wait_ms / 1000)
        resolution = read.round.resolution()
        winner = resolution.winner
        stale = read_repair_targets(read.targets, resolution)
        if winner is None or not stale:
            return
        repairs = self._fan_out_write(stale, winner, len(stale), False, deadline)
        self.counters[f"read_repair.{mode}"] += len(stale)
        if mode == "blocking":
            await repairs.decided
        else:
            await asyncio.wait(repairs.futures, timeout=deadline.left())

    async def _write_back(
        self, read: Fanout[ReadRound], winner: Record, quorum: int, deadline: Deadline
    ) -> None:
        """ABD phase 2 of a read: make sure a quorum holds ``winner`` before answering.

        Without it, a read that saw a write on one replica could be followed by a read
        that misses it: new-then-old, which a linearizable register never shows.
        """
        placement = self.placement
        if placement is not None and len(placement.write_rings) > 1:
            # during a membership change the winner must be held by a quorum of each ring
            # (a read after the switch asks the new one): the new ring's members the read
            # did not ask count as not holding it
            rings = [
                plan(ring, winner.key, self.config.n, quorum, False, self.down(), "get")
                for ring in placement.write_rings
            ]
            todos = [write_back(ring, read.round.replies, winner, quorum) for ring in rings]
            lacking = [t for t in todos if t.needed > 0]
            if not lacking:
                return
            groups = [t.ask for t in lacking]
            self.counters["read_repair.linearizable"] += len(merge_targets(groups))
            back = self._fan_out_write(
                [], winner, [t.needed for t in lacking], False, deadline, groups
            )
            await self._await_round(back.decided, back.round, deadline, "get", count_ok=False)
            return
        todo = write_back(read.targets, read.round.replies, winner, quorum)
        if todo.needed <= 0:
            return
        self.counters["read_repair.linearizable"] += len(todo.ask)
        back = self._fan_out_write(todo.ask, winner, todo.needed, False, deadline)
        await self._await_round(back.decided, back.round, deadline, "get", count_ok=False)

    def _fan_out_write(
        self,
        targets: list[Replica],
        record: Record,
        w: int | list[int],
        sloppy: bool,
        deadline: Deadline,
        groups: list[list[Replica]] | None = None,
    ) -> WriteFan:
        """Send ``record`` to ``targets``, tallied toward ``w``; with ``groups``, to every
        group's replicas, tallied toward ``w`` in each (a list: one figure per group)."""
        fan: WriteFan
        if groups is None:
            assert isinstance(w, int)
            fan = Fanout(WriteRound(targets, w, sloppy), targets, deadline)
        else:
            multi = MultiWriteRound(groups, w, sloppy)
            targets = multi.targets
            fan = Fanout(multi, targets, deadline)
        timeout_s = deadline.left() + REPLICA_GRACE_S
        for target in targets:
            if target.node == self.id:
                future: asyncio.Future[Any] = self._fenced_locally(deadline) or (
                    asyncio.ensure_future(
                        self._local("write", self.apply_local(record, target.hint_for))
                    )
                )
            else:
                future = self.links[target.node].request(
                    replica_codec.write_args(record, target.hint_for, deadline.epoch),
                    timeout_s,
                    self._timer("write", target.node),
                )
            future.add_done_callback(functools.partial(self._on_write, fan, target, record))
            fan.futures.append(future)
        return fan

    def _fan_out_read(
        self,
        targets: list[Replica],
        key: bytes,
        r: int,
        sloppy: bool,
        deadline: Deadline,
        *,
        targeted: bool = False,
    ) -> Fanout[ReadRound]:
        """Ask the replicas for ``key``: all of them, or (``targeted``) R of them first.

        A targeted read asks the others when one of its first R fails, and all of them
        once ``speculative_read_ms`` passed without the round decided (Cassandra's
        speculative retry), so a slow or dead replica costs at most that much.
        """
        fan: Fanout[ReadRound] = Fanout(ReadRound(targets, r, sloppy), targets, deadline)
        first = targets
        if targeted and self.config.speculative_read_ms > 0:
            first, fan.spare = targeted_split(targets, self.id, r, sloppy)
        for target in first:
            self._ask(fan, target, key, deadline)
        if fan.spare:
            delay = self.config.speculative_read_ms / 1000
            fan.also_cancel(
                asyncio.get_running_loop().call_later(
                    delay, self._ask_spares, fan, key, deadline, "read.speculative"
                )
            )
        return fan

    def _ask(self, fan: Fanout[ReadRound], target: Replica, key: bytes, deadline: Deadline) -> None:
        if target.node == self.id:
            future: asyncio.Future[Any] = self._fenced_locally(deadline) or (
                asyncio.ensure_future(self._local("read", self._read_local(key, target.hint_for)))
            )
        else:
            future = self.links[target.node].request(
                replica_codec.read_args(key, target.hint_for, deadline.epoch),
                deadline.left() + REPLICA_GRACE_S,
                self._timer("read", target.node),
            )
        future.add_done_callback(functools.partial(self._on_read, fan, target, key, deadline))
        fan.futures.append(future)

    def _fenced_locally(self, deadline: Deadline) -> asyncio.Future[Any] | None:
        """The epoch fence on this node's own copy, as a replica applies it to a peer's
        request: an attempt placed with a ring this node has moved past (it learnt a newer
        one during the attempt, say during a linearizable write's query round) is refused
        unserved, so the attempt runs again on the newer ring. None: not fenced."""
        why = self.older_placement(deadline.epoch)
        if why is None:
            return None
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        refused.set_exception(StaleEpoch(why, peer=self.id, epoch=self.epoch))
        return refused

    def _ask_spares(
        self, fan: Fanout[ReadRound], key: bytes, deadline: Deadline, reason: str, count: int = 0
    ) -> None:
        """Ask ``count`` more of a targeted read's spare replicas (0: all of them)."""
        if fan.decided.done() or not fan.spare or self.time.monotonic() >= deadline.end:
            return  # decided, nothing left, or the call is over (its caller has an answer)
        take = len(fan.spare) if count <= 0 else count
        asked, fan.spare = fan.spare[:take], fan.spare[take:]
        self.counters[reason] += len(asked)
        for target in asked:
            self._ask(fan, target, key, deadline)

    async def _settle(self, fan: Fanout[Any], grace_s: float, *, report: bool = False) -> None:
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

    def _local(self, op: str, work: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """This node's own replica's work for a call, timed when metrics are kept."""
        if self.metrics is None:
            return work
        return self._timed_local(op, work)

    async def _timed_local(self, op: str, work: Coroutine[Any, Any, T]) -> T:
        assert self.metrics is not None
        began = self.time.monotonic()
        result = await work
        self.metrics.local(op, self.time.monotonic() - began)
        return result

    def _timer(self, op: str, peer: str) -> Callable[[float], None] | None:
        """What times one replica request for the metrics, from now to its answer."""
        if self.metrics is None:
            return None
        return functools.partial(self.metrics.round_trip, op, peer, self.time.monotonic())

    def _on_write(
        self,
        fan: WriteFan,
        target: Replica,
        record: Record,
        future: asyncio.Future[Any],
    ) -> None:
        error = future.exception() if not future.cancelled() else PeerError("cancelled", sent=True)
        fan.call.refused_by(error)
        if isinstance(error, StaleEpoch) and fan.decided.done():
            # refused after the call had its answer: nobody runs it again, so the copy
            # that replica refused is carried to the newer ring here
            acked = {r.node for r in fan.reports if r.ok}
            self._spawn(self._spread_on_newer_ring(record, acked, error))
        if error is None:
            outcome = fan.round.reply(target, Reply.ACK)
            fan.reports.append(ReplicaReport(target.node, True, not target.primary))
        else:
            sent = error.sent if isinstance(error, PeerError) else True
            outcome = fan.round.reply(target, Reply.FAILED if sent else Reply.NOT_SENT)
            fan.reports.append(
                ReplicaReport(target.node, False, not target.primary, error=str(error))
            )
        if outcome is not Outcome.PENDING:
            fan.decide(True)

    async def _spread_on_newer_ring(
        self, record: Record, acked: set[str], refused: StaleEpoch
    ) -> None:
        """Once this node serves the epoch a replica refused ``record`` with, write it
        to the key's replicas in that ring (every ring writes go to) that did not take
        it yet, as the rest of a write spreads in the background."""
        timeout_s = self.config.request_timeout_ms / 1000
        if not await self.learnt_epoch(refused.epoch, refused.peer, timeout_s):
            return  # anti-entropy carries it later
        assert self.placement is not None
        self.counters["write.respread"] += 1
        await self.copy_to(record, self.placement.holders(record.key, self.config.n) - acked)

    async def _await_round(
        self,
        decided: asyncio.Future[bool],
        round_: WriteRound | MultiWriteRound | ReadRound,
        deadline: Deadline,
        op: str,
        *,
        count_ok: bool = True,
    ) -> None:
        if not await decided:
            self.counters[f"{op}.timeout"] += 1
            raise round_.timeout_error(deadline.timeout_ms)
        if round_.tally.outcome is Outcome.FAILED:
            error = round_.error()
            self.counters[f"{op}.{error.code}"] += 1
            raise error
        if count_ok:
            self.counters[f"{op}.ok"] += 1

    def _on_read(
        self,
        fan: Fanout[ReadRound],
        target: Replica,
        key: bytes,
        deadline: Deadline,
        future: asyncio.Future[Any],
    ) -> None:
        error = future.exception() if not future.cancelled() else PeerError("cancelled", sent=True)
        fan.call.refused_by(error)
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
        if outcome is not Outcome.PENDING:
            fan.decide(True)
