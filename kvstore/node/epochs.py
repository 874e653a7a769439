"""A node's ring epoch: its Paxos acceptor, the ring it places keys with, learning newer.

Rules and invariants:
- Every Paxos message (``kvstore.core.epochs``) is answered only after the acceptor's new
  state is durable (``RingStore.save``), one message at a time.
- The node follows the ring chosen last: reads use ``RingRecord.read_ids``, writes
  every ring of ``write_rings`` (two while a change is under way). Following adds links
  and failure detectors for members it did not know; it never drops a link (a leaving
  node still answers until it is stopped).
- A node learns a newer epoch from any peer: every replica reply carries the replica's
  epoch and every heartbeat its sender's, and a node behind asks that peer for its ring
  (``epoch.get``) and validates it. Its background work keeps the one it has meanwhile;
  a client call a replica refused for its older epoch waits to learn the newer one and
  runs again (``kvstore.node.coordinator``). The operator confirms every node is on an
  epoch before it takes the next step, and each step is safe beside the one before it.
- A joining node (``--join``, no ring yet) refuses to coordinate until it has learned
  one: it would not know where keys live.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kvstore.core.epoch_wire import WireError, decode_ring, encode_ring
from kvstore.core.epochs import (
    AcceptorState,
    Behind,
    Learn,
    Learned,
    Reply,
    Request,
    RingRecord,
    accept,
)
from kvstore.core.failure import Membership
from kvstore.core.peer_input import PeerLimits
from kvstore.core.ring import Ring
from kvstore.net.link import Link, Transport
from kvstore.node.ring_store import RingStore

EPOCH_GET_TIMEOUT_S = 2.0
LEARN_RETRY_S = 0.05  # a call waiting for a newer epoch asks again this often


@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    """The rings one ring record gives: where reads go and which rings writes must reach."""

    record: RingRecord
    read_ring: Ring
    write_rings: tuple[Ring, ...]

    @classmethod
    def of(cls, record: RingRecord) -> Placement:
        # reads use one of the write rings (the old one, or the new once reads switch)
        rings = {ids: Ring(ids, record.vnodes) for ids in record.write_rings()}
        return cls(record, rings[record.read_ids()], tuple(rings.values()))

    def holders(self, key: bytes, n: int) -> set[str]:
        """Every node that holds ``key`` here: its N primaries in each ring writes go to."""
        found: set[str] = set()
        for ring in self.write_rings:
            found.update(ring.primaries(key, n))
        return found


class EpochMixin:
    """``Node``'s epoch methods; the state they use is the node's (declared here)."""

    id: str
    epochs: AcceptorState | None
    ring_store: RingStore
    placement: Placement | None
    links: dict[str, Link]
    membership: Membership
    limits: PeerLimits
    counters: collections.Counter[str]
    offload: Callable[..., Awaitable[Any]]
    ring_listeners: list[Callable[[], None]]
    _transport: Transport
    _epoch_lock: asyncio.Lock
    _epoch_waiters: list[asyncio.Future[None]]  # calls waiting to learn a newer epoch

    if TYPE_CHECKING:  # the node's own

        def _heard(self, peer: str, epoch: int | None = None) -> None: ...
        def _spawn(self, coro: Any) -> None: ...
        @property
        def time(self) -> Any: ...

    @property
    def epoch(self) -> int:
        """The epoch this node serves (0: joining, no ring yet)."""
        return self.epochs.chosen.epoch if self.epochs is not None else 0

    async def epoch_message(self, message: Request) -> Reply:
        """One Paxos message from a proposer (or a Learn): the acceptor's reply."""
        async with self._epoch_lock:
            if self.epochs is None:  # joining: nothing to vote with until it learns a ring
                if not isinstance(message, Learn):
                    return Behind(0)
                state = AcceptorState(message.ring)
                reply: Reply = Learned(message.ring.epoch)
            else:
                state, reply = accept(self.epochs, message)
            if state != self.epochs:
                await self.offload(self.ring_store.save, state)
                before = self.epochs.chosen if self.epochs is not None else None
                self.epochs = state
                if state.chosen != before:
                    self.follow(state.chosen)
            return reply

    def follow(self, record: RingRecord) -> None:
        """Place keys with ``record`` from now on."""
        for peer, address in record.everyone():
            if peer != self.id and peer not in self.links:
                self.links[peer] = self._transport.link(peer, address, self._heard)
                self.membership.add(peer, self.time.monotonic())
        known = self.limits.nodes | {m for m, _ in record.everyone()}
        self.limits = dataclasses.replace(self.limits, nodes=frozenset(known))
        self.placement = Placement.of(record)
        self.counters["epoch.followed"] += 1
        self._wake_epoch_waiters()
        for listener in self.ring_listeners:
            listener()

    async def learnt_epoch(self, epoch: int, peer: str, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until this node serves ``epoch`` or newer,
        learning it from ``peer`` meanwhile; True once it does."""
        end = self.time.monotonic() + timeout_s
        while self.epoch < epoch:
            left = end - self.time.monotonic()
            if left <= 0:
                return False
            self.heard_epoch(peer, epoch)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._epoch_waiters.append(waiter)
            await asyncio.wait([waiter], timeout=left)  # woken by follow() or a failed learn
            if waiter in self._epoch_waiters:
                self._epoch_waiters.remove(waiter)
            if self.epoch < epoch:  # the learn failed: not again at once
                await asyncio.sleep(max(0.0, min(LEARN_RETRY_S, end - self.time.monotonic())))
        return True

    def _wake_epoch_waiters(self) -> None:
        waiters, self._epoch_waiters = self._epoch_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def heard_epoch(self, peer: str, epoch: int) -> None:
        """A peer said it serves ``epoch``: learn it from that peer if it is newer."""
        if epoch > self.epoch and not self._learning:
            self._learning = True
            self._spawn(self._learn_from(peer))

    _learning: bool = False

    async def _learn_from(self, peer: str) -> None:
        try:
            link = self.links.get(peer)
            if link is None:
                return
            raw = await link.request(["epoch.get"], EPOCH_GET_TIMEOUT_S)
            try:
                ring = decode_ring(raw, f"{peer}'s ring")
            except WireError as exc:
                self.counters["epoch.bad_answer"] += 1
                raise ValueError(f"{peer} answered a bad ring: {exc}") from None
            if ring.epoch > self.epoch:
                await self.epoch_message(Learn(ring))
                self.counters["epoch.learned"] += 1
        except Exception:  # a failed fetch is retried on the next heartbeat that says so
            self.counters["epoch.learn_failed"] += 1
        finally:
            self._learning = False
            self._wake_epoch_waiters()  # they check again, and ask again if still behind

    async def op_epoch_get(self, args: list[Any]) -> Any:
        """Replica op: this node's chosen ring (what a peer behind it learns)."""
        if self.epochs is None:
            raise LookupError(f"{self.id} is joining: it has no ring yet")
        return encode_ring(self.epochs.chosen)
