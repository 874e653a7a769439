"""Hinted handoff: a fallback hands back the writes it took for a down owner.

Rules:
- Hints are durable (the engine's hint store) and replayed once the failure detector
  sees the owner up: throttled to ``hint_replay_rate`` per second, oldest first, with
  their original timestamps (so a replayed hint never beats a newer write).
- A hint is deleted only after the owner acknowledged it; an unacknowledged one is
  tried again on a later tick.
- Hints older than the hint window are dropped and counted (``hints.dropped``;
  ``kvstore.core.hints`` decides which); anti-entropy repairs what they covered.
- A failing tick is logged and handoff carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

from kvstore.config import ClusterConfig
from kvstore.core.failure import Membership
from kvstore.core.hints import expired
from kvstore.net import replica_codec
from kvstore.net.link import Link
from kvstore.node.clock import Clock
from kvstore.storage.base import Engine

HANDOFF_TICK_S = 0.1
EXPIRY_EVERY_S = 1.0
# hints examined per engine query: a large hint store is expired a batch at a time
EXPIRY_BATCH = 500
log = logging.getLogger("kvstore.node")


class HandoffMixin:
    """``Node``'s hinted handoff; the state it uses is the node's (declared here)."""

    config: ClusterConfig
    engine: Engine
    time: Clock
    links: dict[str, Link]
    membership: Membership
    counters: collections.Counter[str]
    hints_pending: dict[str, int]

    if TYPE_CHECKING:  # the node's own

        def physical_us(self) -> int: ...

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
