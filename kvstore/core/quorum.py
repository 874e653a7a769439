"""Quorum arithmetic: a tally of replies with a three-way outcome.

Invariants: the outcome is REACHED as soon as ``acks >= needed``, FAILED as soon as so
many replies failed that ``needed`` can no longer be reached, PENDING otherwise; once
decided it never changes (late replies are counted but do not flip it).
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    PENDING = "pending"
    REACHED = "reached"
    FAILED = "failed"


class Tally:
    __slots__ = ("acks", "failures", "needed", "outcome", "total")

    def __init__(self, needed: int, total: int) -> None:
        if needed < 1:
            raise ValueError("a quorum needs at least one reply")
        self.needed = needed
        self.total = total
        self.acks = 0
        self.failures = 0
        self.outcome = Outcome.FAILED if total < needed else Outcome.PENDING

    def ack(self) -> Outcome:
        self.acks += 1
        if self.outcome is Outcome.PENDING and self.acks >= self.needed:
            self.outcome = Outcome.REACHED
        return self.outcome

    def fail(self) -> Outcome:
        self.failures += 1
        if self.outcome is Outcome.PENDING and self.total - self.failures < self.needed:
            self.outcome = Outcome.FAILED
        return self.outcome
