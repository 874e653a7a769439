"""Hinted handoff: a fallback hands back the writes it took for a down owner.

Rules:
- Hints are durable (the engine's hint store) and replayed once the failure detector
  sees the owner up: throttled to ``hint_replay_rate`` per second, oldest first, with
  their original timestamps (so a replayed hint never beats a newer write).
- A hint is deleted only after the owner acknowledged it; an unacknowledged one is
  tried again on a later tick.
- Hints target the current replica set: a hint whose owner no longer holds its key (a
  membership change moved the key, or removed the owner) goes to the replicas the key
  has now instead, all of them (``hints.retargeted``).
- Hints older than the hint window are dropped and counted (``hints.dropped``;
  ``kvstore.core.hints`` decides which); anti-entropy repairs what they covered.
- A failing tick is logged and handoff carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kvstore.config import ClusterConfig
from kvstore.core.failure import Membership
from kvstore.core.hints import expired
from kvstore.core.version import Record
from kvstore.net import replica_codec
from kvstore.net.link import Link
from kvstore.node.clock import Clock
from kvstore.storage.base import Engine

if TYPE_CHECKING:
    from kvstore.node.epochs import Placement

HANDOFF_TICK_S = 0.1
EXPIRY_EVERY_S = 1.0
# hints examined per engine query: a large hint store is expired a batch at a time
EXPIRY_BATCH = 500
log = logging.getLogger("kvstore.node")


class HandoffMixin:
    """``Node``'s hinted handoff; the state it uses is the node's (declared here)."""

    config: ClusterConfig
    id: str
    engine: Engine
    time: Clock
    links: dict[str, Link]
    membership: Membership
    counters: collections.Counter[str]
    hints_pending: dict[str, int]

    placement: Placement | None

    if TYPE_CHECKING:  # the node's own

        def physical_us(self) -> int: ...
        async def apply_local(self, record: Record, hint_for: str | None) -> bool: ...
        @property
        def epoch(self) -> int: ...

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
            oldest = await self.engine.hints(None, limit=EXPIRY_BATCH)
            dropping = expired(oldest, now, window_us)
            if dropping:
                await self.engine.delete_hints(dropping)
                dropped += len(dropping)
                self.counters["hints.dropped"] += len(dropping)
            # oldest first: a batch not wholly expired means no later hint is either
            if len(dropping) < len(oldest) or len(oldest) < EXPIRY_BATCH:
                return dropped

    async def replay_hints(self, budget: int) -> int:
        """Send up to ``budget`` hints to their owners; delete the acknowledged ones.

        A hint goes to the replicas its key has in the current ring: its owner while the
        owner still holds the key (and only once the owner is seen up), or else, when the
        ring moved the key away or removed the owner, every replica the key has now (in
        each ring writes go to); it is deleted once all of them acknowledged it."""
        delivered_total = 0
        now = self.time.monotonic()
        counts = await self.engine.hint_counts()
        self.hints_pending = counts  # for the metrics, read without the loop
        placement = self.placement
        members = set() if placement is None else {m for m, _ in placement.record.everyone()}
        for owner, pending in sorted(counts.items()):
            if budget <= 0 or pending == 0 or placement is None:
                continue
            if owner in members and not self.membership.is_up(owner, now):
                continue  # it comes back: the hints wait for it
            hints = await self.engine.hints(owner, limit=budget)
            sent = [self.copy_to(h.record, self._hint_targets(owner, h.record.key)) for h in hints]
            replies = await asyncio.gather(*sent, return_exceptions=True)
            delivered = [
                h.hint_id for h, reply in zip(hints, replies, strict=True) if reply is True
            ]
            if delivered:
                await self.engine.delete_hints(delivered)
                self.counters["hints.delivered"] += len(delivered)
            budget -= len(hints)
            delivered_total += len(delivered)
        return delivered_total

    def _hint_targets(self, owner: str, key: bytes) -> set[str]:
        """Where a hint for ``owner`` goes now: the owner if it still holds ``key``,
        else the key's replicas in every ring writes go to."""
        assert self.placement is not None
        holders = self.placement.holders(key, self.config.n)
        if owner in holders:
            return {owner}
        self.counters["hints.retargeted"] += 1
        return holders

    async def copy_to(self, record: Record, targets: set[str]) -> bool:
        """Write ``record``, a version that exists already (a hint's, or a copy a replica
        refused for its epoch), to every one of ``targets`` this node can reach, placed
        with this node's epoch; True if all of them took it."""
        timeout_s = self.config.request_timeout_ms / 1000
        sent: list[Awaitable[Any]] = []
        unreachable = False
        for target in sorted(targets):
            if target == self.id:
                sent.append(self.apply_local(record, None))
            elif (link := self.links.get(target)) is not None:
                sent.append(
                    link.request(replica_codec.write_args(record, None, self.epoch), timeout_s)
                )
            else:
                unreachable = True
        replies = await asyncio.gather(*sent, return_exceptions=True)
        return not unreachable and not any(isinstance(r, BaseException) for r in replies)
