"""How far this node's clock is from its peers', from heartbeats, pure (times come in).

Rules and invariants:
- Each heartbeat reply carries the peer's physical clock; with the request's send and
  receive times on this node's clock, the peer's offset is estimated as NTP does:
  ``remote - (sent + received) / 2``, good to half the round trip.
- The node's offset is the median of its peers' fresh estimates (at most ``fresh_s``
  old), so one wrong peer cannot move it; it is known only with estimates from at least
  half of the peers.
- A node whose offset exceeds ``max_drift_us`` must not coordinate writes: its
  timestamps would be refused by every peer (or, if behind, lose to older writes). It
  stops serving until its clock is back within the bound, as a CockroachDB node whose
  clock is off by more than the maximum offset does.
"""

from __future__ import annotations

import statistics


class ClockGuard:
    __slots__ = ("_samples", "fresh_s", "max_drift_us", "peers")

    def __init__(self, peers: int, max_drift_us: int, fresh_s: float) -> None:
        self.peers = peers
        self.max_drift_us = max_drift_us
        self.fresh_s = fresh_s
        self._samples: dict[str, tuple[float, int]] = {}  # peer -> (when, our offset)

    def sample(self, peer: str, sent_us: int, received_us: int, remote_us: int, now: float) -> None:
        """One heartbeat's round trip: our clock at send and receive, the peer's between."""
        # The peer is ahead by (remote - midpoint); we are ahead of it by the opposite.
        self._samples[peer] = (now, (sent_us + received_us) // 2 - remote_us)

    def offset_us(self, now: float) -> int | None:
        """How far ahead (positive) or behind this node's clock is; None: not known."""
        fresh = [off for when, off in self._samples.values() if now - when <= self.fresh_s]
        if not fresh or 2 * len(fresh) < self.peers:
            return None
        return int(statistics.median(fresh))

    def problem(self, now: float) -> str | None:
        """Why this node must not coordinate now, or None."""
        offset = self.offset_us(now)
        if offset is None or abs(offset) <= self.max_drift_us:
            return None
        side = "ahead of" if offset > 0 else "behind"
        return (
            f"this node's clock is {abs(offset) / 1000:.0f} ms {side} its peers' "
            f"(max_clock_drift_ms={self.max_drift_us // 1000}): it coordinates no writes "
            f"until its clock is fixed"
        )
