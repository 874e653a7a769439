"""Failure detection: a phi-accrual detector per peer, pure (time comes in as arguments).

Model (Hayashibara et al., as Cassandra and Akka use it): heartbeats arrive at intervals
whose recent mean is ``mean``; after ``elapsed`` seconds of silence,
``phi = elapsed / mean * log10(e)`` (exponentially distributed arrivals). A peer is
``down`` when phi reaches the threshold that configured detection time gives at the
nominal heartbeat interval, ``suspect`` from half of it, ``up`` below.

Invariants:
- With heartbeats at the nominal interval, a silent peer is down exactly
  ``detection_s`` after the last one it sent; a slower-than-nominal history stretches
  that (fewer false alarms under load) but never beyond ``2 * detection_s``.
- A peer never heard from counts from the detector's start: a node starting up gives
  its peers one detection time before it calls them down.
- Any reply from a peer counts as a heartbeat.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

UP = "up"
SUSPECT = "suspect"
DOWN = "down"
LOG10_E = math.log10(math.e)


@dataclass(frozen=True, slots=True)
class PeerView:
    node: str
    state: str
    phi: float
    last_heard_s: float  # seconds of silence
    heard: bool  # at least one heartbeat or reply has come since the detector started


class PhiDetector:
    """The health of one peer, from the times its heartbeats arrived."""

    __slots__ = ("_intervals", "_last", "_sum", "interval_s", "threshold")

    def __init__(self, interval_s: float, detection_s: float, start_s: float, window: int = 50):
        if not 0 < interval_s < detection_s:
            raise ValueError("need 0 < heartbeat interval < detection time")
        self.interval_s = interval_s
        self.threshold = detection_s / interval_s * LOG10_E
        self._intervals: deque[float] = deque(maxlen=window)
        self._sum = 0.0  # of _intervals, kept as they come and go
        self._last = start_s

    def heard(self, now_s: float) -> None:
        if now_s <= self._last:
            return
        if len(self._intervals) == self._intervals.maxlen:
            self._sum -= self._intervals[0]
        interval = now_s - self._last
        self._intervals.append(interval)
        self._sum += interval
        self._last = now_s

    def mean_interval(self) -> float:
        if not self._intervals:
            return self.interval_s
        mean = self._sum / len(self._intervals)
        return min(max(mean, self.interval_s), 2 * self.interval_s)

    def down_at(self) -> float:
        """When the peer will be down if it stays silent (phi reaches the threshold)."""
        return self._last + self.threshold * self.mean_interval() / LOG10_E

    def phi(self, now_s: float) -> float:
        return max(0.0, now_s - self._last) / self.mean_interval() * LOG10_E

    def state(self, now_s: float) -> str:
        phi = self.phi(now_s)
        if phi >= self.threshold:
            return DOWN
        if phi >= self.threshold / 2:
            return SUSPECT
        return UP

    def silence(self, now_s: float) -> float:
        return max(0.0, now_s - self._last)

    @property
    def ever_heard(self) -> bool:
        return bool(self._intervals)


class Membership:
    """Every peer's detector; the static member list comes from the config."""

    def __init__(
        self, me: str, peers: list[str], interval_s: float, detection_s: float, start_s: float
    ) -> None:
        self.me = me
        self._interval_s, self._detection_s = interval_s, detection_s
        self.detectors = {p: PhiDetector(interval_s, detection_s, start_s) for p in peers}
        # down() is asked on every request: its answer is kept until the next instant a
        # silent peer crosses its threshold, or until a peer it calls down is heard
        # (exact, not a time-based cache: nothing else changes a peer's state; hearing
        # a peer that is up only moves its threshold later, so the answer stands).
        self._down: frozenset[str] = frozenset()
        self._down_valid_until = -math.inf

    def add(self, peer: str, now_s: float) -> None:
        """A new member: it gets one detection time from now before it can be down."""
        if peer != self.me and peer not in self.detectors:
            self.detectors[peer] = PhiDetector(self._interval_s, self._detection_s, now_s)
            self._down_valid_until = -math.inf

    def heard(self, peer: str, now_s: float) -> None:
        detector = self.detectors.get(peer)
        if detector is not None:
            detector.heard(now_s)
            if peer in self._down:
                self._down_valid_until = -math.inf

    def down(self, now_s: float) -> frozenset[str]:
        if now_s < self._down_valid_until:
            return self._down
        down, next_change = set(), math.inf
        for peer, detector in self.detectors.items():
            if detector.state(now_s) == DOWN:
                down.add(peer)
            else:
                next_change = min(next_change, detector.down_at())
        # a hair early, so that rounding in down_at() can never keep a stale answer
        self._down, self._down_valid_until = frozenset(down), next_change - 1e-9
        return self._down

    def is_up(self, peer: str, now_s: float) -> bool:
        detector = self.detectors.get(peer)
        return detector is None or detector.state(now_s) != DOWN

    def views(self, now_s: float) -> list[PeerView]:
        return [
            PeerView(
                p,
                d.state(now_s),
                round(d.phi(now_s), 3),
                round(d.silence(now_s), 3),
                d.ever_heard,
            )
            for p, d in sorted(self.detectors.items())
        ]
