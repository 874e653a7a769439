"""The replica side of a node: what it does with the messages its peers send.

Rules:
- Everything a peer sends is validated before use (``kvstore.core.peer_input``); a
  timestamp further ahead than ``max_clock_drift_ms`` is refused and counted
  (``replica.refused_clock``), so no peer can push this node's clock ahead. A bad
  message gets an error reply; the stream and the node carry on.
- Writes of one frame share one engine call (and so one commit); reads likewise.
- A read or write placed with an older ring epoch than this node's is refused unserved
  (status STALE): no coordinator serves with a ring the cluster has moved past.
- A write for another owner (``hint_for``) is stored as a durable hint, not applied; a
  read as a fallback answers the newer of the node's own version and its hints for the
  owner, so a write a fallback took is visible while the owner is away.
- A lying disk is a fault of the storage seam (``kvstore.storage.lying``, wrapped
  around the engine of a node with faults enabled), not logic here.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kvstore.core.hlc import HybridClock
from kvstore.core.peer_input import ClockDriftError, PeerInputError, PeerLimits
from kvstore.core.version import Record, Timestamp, newer
from kvstore.net import replica_codec
from kvstore.net.faults import FaultRules
from kvstore.node.clock import Clock
from kvstore.storage.base import Engine
from kvstore.storage.lying import LyingDisk


class ReplicaMixin:
    """``Node``'s replica methods; the state they use is the node's (declared here)."""

    id: str
    engine: Engine
    limits: PeerLimits
    clock: HybridClock
    faults: FaultRules
    counters: collections.Counter[str]
    lying_disk: LyingDisk | None
    time: Clock
    replica_ops: dict[str, Callable[[list[Any]], Awaitable[Any]]]

    if TYPE_CHECKING:  # the node's own

        def physical_us(self) -> int: ...
        def _spawn(self, coro: Any) -> None: ...
        def heard_epoch(self, peer: str, epoch: int) -> None: ...
        @property
        def epoch(self) -> int: ...
        @property
        def links(self) -> dict[str, Any]: ...

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
        return await self.engine.apply(record)

    async def stop_lying(self) -> None:
        """The disk stops lying (a fault, ``kvstore.storage.lying``): what it held in
        memory is written for real."""
        if self.lying_disk is not None:
            await self.lying_disk.stop_lying()

    async def local_version(self, key: bytes) -> Record | None:
        """This node's own version of ``key`` (a lying disk's held writes included)."""
        return await self.engine.get(key)

    async def _read_local(self, key: bytes, hint_for: str | None = None) -> list[Any] | None:
        """This node's version of ``key``; as a fallback for ``hint_for``, the newer of
        that and the hints it holds for the owner (which is what it stands in for)."""
        record = await self.local_version(key)
        if hint_for is not None and hint_for != self.id:
            self.counters["replica.fallback_reads"] += 1
            record = newer(record, await self.engine.hinted(hint_for, key))
        return replica_codec.encode_record(record)

    def handle_frame(self, messages: list[list[Any]], send: Callable[[list[Any]], None]) -> None:
        """Serve one frame of replica requests; replies go to ``send`` as they are ready.

        Writes of one frame share one engine call (and so one commit); reads likewise.
        Every reply carries its service time (from the frame's arrival to the reply, on
        this node's clock) and the ring epoch this node serves (``replica_codec``); a ping
        names its sender's epoch, learnt from the sender when newer.
        """
        clock = self.time.monotonic
        arrived = clock()

        def reply(answer: list[Any]) -> None:
            answer.append(round((clock() - arrived) * 1e6))
            answer.append(self.epoch)
            send(answer)

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
                    record, hint_for, epoch = replica_codec.record_from_write(args, self.limits)
                    self.check_drift(record.ts)
                    if self._placed_on_older(rid, epoch, reply):
                        continue
                    if hint_for is not None and hint_for != self.id:
                        self._spawn(self._hint(rid, record, hint_for, reply))
                    else:
                        writes.append((rid, record))
                elif op == "r":
                    key, hint_for, epoch = replica_codec.read_request(args, self.limits)
                    if self._placed_on_older(rid, epoch, reply):
                        continue
                    if hint_for is not None:  # asked as a fallback
                        self._spawn(self._serve_op(rid, self._fallback_read, args, reply))
                    else:
                        reads.append((rid, key))
                elif op == "p":
                    if len(args) == 2 and type(args[1]) is int and args[0] in self.links:
                        self.heard_epoch(args[0], args[1])  # the sender's epoch
                    reply([rid, replica_codec.OK, [self.id, self.physical_us(), self.epoch]])
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

    def older_placement(self, epoch: int | None) -> str | None:
        """The epoch fence: why a read or write placed with ring ``epoch`` is refused
        unserved (this node serves a newer ring), counted; None: it may be served. A peer's
        request and the coordinator's own copy are fenced alike."""
        if epoch is None or epoch >= self.epoch or "no-epoch-fence" in self.faults.planted:
            return None
        self.counters["replica.refused_epoch"] += 1
        return f"{self.id} serves ring epoch {self.epoch}; the request was placed with {epoch}"

    def _placed_on_older(
        self, rid: int, epoch: int | None, reply: Callable[[list[Any]], None]
    ) -> bool:
        """Refuse (unserved) a read or write placed with an older ring epoch than this
        node's: its coordinator learns the newer ring from the reply and asks again, so
        no coordinator serves with a ring the cluster has moved past."""
        why = self.older_placement(epoch)
        if why is None:
            return False
        reply([rid, replica_codec.STALE, why])
        return True

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

    async def _apply_batch(
        self, writes: list[tuple[int, Record]], reply: Callable[[list[Any]], None]
    ) -> None:
        now = self.physical_us()
        for _, record in writes:
            self.clock.observe(record.ts, now)
        try:
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
        except Exception as exc:
            for rid, _ in reads:
                reply([rid, replica_codec.ERROR, f"storage failed: {exc}"])
            return
        self.counters["replica.reads"] += len(reads)
        for (rid, _), record in zip(reads, records, strict=True):
            reply([rid, replica_codec.OK, replica_codec.encode_record(record)])
