"""What one coordinated call holds while it runs: its rounds of replica requests in
flight, its time budget and ring epoch, and what it answers.

Rules: a round's ``decided`` future completes exactly once (True: decided; False: the
call's deadline came first); a call's budget is shared by all its rounds and attempts,
and ``refused`` keeps the newest ring epoch a replica refused the attempt with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kvstore.core.coordinator import MultiWriteRound, ReadRound, WriteRound
from kvstore.core.ring import Replica
from kvstore.core.version import Record, Timestamp
from kvstore.net.link import StaleEpoch
from kvstore.node.clock import Clock

# Replica requests outlive their call by this much, so that the call's own deadline, not
# a replica request expiring at the same instant, decides how a slow call fails
# (RequestTimeout, which says how many answered, rather than a QuorumFailed).
REPLICA_GRACE_S = 0.05
TRACE_GRACE_S = 0.25


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


RoundT = TypeVar("RoundT", WriteRound, MultiWriteRound, ReadRound)
T = TypeVar("T")


class Fanout(Generic[RoundT]):
    """One round of replica requests in flight: the core's round plus the I/O around it.

    ``decided`` is True once the round is decided, False if the call's deadline came
    first: the fan-out's own timer says so, and a waiter awaits just this one future
    (one wake-up per round, no waiter or shield of its own: this runs once or twice per
    client call). Replica work carries on either way.
    """

    __slots__ = ("_timers", "call", "decided", "futures", "reports", "round", "spare", "targets")

    def __init__(self, round_: RoundT, targets: list[Replica], deadline: Deadline) -> None:
        loop = asyncio.get_running_loop()
        self.call = deadline
        self.round: RoundT = round_
        self.targets = targets
        self.decided: asyncio.Future[bool] = loop.create_future()
        self.futures: list[asyncio.Future[Any]] = []
        self.reports: list[ReplicaReport] = []
        self.spare: list[Replica] = []  # a targeted read's replicas not asked yet
        self._timers = [loop.call_later(deadline.left(), self.decide, False)]

    def decide(self, in_time: bool) -> None:
        if not self.decided.done():
            self.decided.set_result(in_time)
            for timer in self._timers:
                timer.cancel()

    def also_cancel(self, timer: asyncio.TimerHandle) -> None:
        """Cancel ``timer`` (a speculative retry) once the round is decided."""
        self._timers.append(timer)


class Deadline:
    """One call's time budget, shared by all its rounds (ABD has two) and attempts, and
    the ring epoch the current attempt placed the key with (what its requests carry).
    ``refused``: the newest (epoch, replica) a replica refused the attempt with."""

    __slots__ = ("clock", "end", "epoch", "refused", "timeout_ms")

    def __init__(self, timeout_ms: int, clock: Clock) -> None:
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.end = clock.monotonic() + timeout_ms / 1000
        self.epoch = 0
        self.refused: tuple[int, str] | None = None

    def pinned(self) -> Deadline:
        """A copy for work that outlives its attempt (an async read repair): it keeps the
        attempt's epoch when the call runs again on a newer ring and moves the shared
        one on, and what refuses it does not make the call run again."""
        copy = Deadline.__new__(Deadline)
        copy.clock, copy.timeout_ms, copy.end = self.clock, self.timeout_ms, self.end
        copy.epoch, copy.refused = self.epoch, None
        return copy

    def refused_by(self, error: BaseException | None) -> None:
        if isinstance(error, StaleEpoch) and (
            self.refused is None or error.epoch > self.refused[0]
        ):
            self.refused = (error.epoch, error.peer)

    def left(self) -> float:
        return max(0.001, self.end - self.clock.monotonic())


WriteFan = Fanout[WriteRound] | Fanout[MultiWriteRound]
