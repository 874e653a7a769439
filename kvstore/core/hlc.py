"""Hybrid logical clock (Kulkarni et al.), pure: the caller passes physical time in.

Invariants:
- ``now`` returns strictly increasing timestamps on one node, whatever the physical
  clock does (it may stall or jump backwards).
- After ``observe(ts)``, every later ``now`` is greater than ``ts``: causality across
  nodes is kept even with skewed clocks.
- ``wall`` never runs more than the largest skew seen ahead of the physical clock.
"""

from __future__ import annotations

from kvstore.core.version import Timestamp


class HybridClock:
    __slots__ = ("logical", "node", "wall")

    def __init__(self, node: str) -> None:
        self.node = node
        self.wall = 0
        self.logical = 0

    def now(self, physical_us: int) -> Timestamp:
        if physical_us > self.wall:
            self.wall = physical_us
            self.logical = 0
        else:
            self.logical += 1
        return Timestamp(self.wall, self.logical, self.node)

    def observe(self, ts: Timestamp, physical_us: int) -> None:
        """Merge a timestamp seen from elsewhere, so later ``now`` readings exceed it."""
        top = max(self.wall, ts.wall, physical_us)
        if top == self.wall and top == ts.wall:
            self.logical = max(self.logical, ts.logical)
        elif top == ts.wall:
            self.logical = ts.logical
        elif top != self.wall:
            self.logical = -1  # the next ``now`` at this wall starts from 0
        self.wall = top
