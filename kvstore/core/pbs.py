"""Probabilistically Bounded Staleness: a Monte-Carlo prediction of how fresh a read is.

The model is Bailis et al.'s WARS (VLDB 2012). For one write and a read that starts
``t`` after the write committed, each of the N replicas draws W (the write reaching it),
A (its ack coming back), R (the read reaching it) and S (its answer coming back):
- the write commits at the W-th smallest W_i + A_i (the coordinator has W acks);
- replica i holds the write when the read reaches it iff W_i <= commit + t + R_i;
- the read returns the R fastest answers (by R_i + S_i); it is consistent iff one of
  them held the write.
So R + W > N is consistent at every t by construction: an acker j has W_j <= commit.

Beyond the paper, ``Coordinators`` models where calls are coordinated, which PBS leaves
out and which decides staleness in a Dynamo whose coordinator is often a replica: a
coordinator that holds a replica of the key applies and reads it without a hop (that
replica's W is the local write's service time and A is 0; its R is the local read's
and S is 0), and its own answer is always among a read's R (it is the fastest, and a
targeted read asks it first). With a share of calls coordinated by a replica, and the
write and the read coordinated by the same node (clients that route by the ring: the
key's first primary) or by independent ones (clients bound to any node, as the harness's
are). The by-construction rule above still holds: it never looks at the values.

Rules: pure (randomness is an argument: anything with ``random()``); every t is judged
on the same draws, so the predicted probability never decreases with t; latencies are
the same trials' write commit and read return times. k-staleness (the read returns one
of the last k versions) assumes independent writes: 1 - (1 - p)^k with p at t = 0.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Random(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Distribution:
    """A latency distribution (seconds) from histogram buckets: ``bounds`` are ascending
    upper bounds, ``counts`` how many observations fell in each bucket (the first one
    starts at ``low``). Samples are drawn by inverse CDF, linear within a bucket."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    low: float = 0.0
    _cumulative: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts) or not self.bounds:
            raise ValueError("a distribution needs as many counts as bounds, at least one")
        if any(b < a for a, b in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError("bucket bounds must ascend")
        if any(c < 0 for c in self.counts) or sum(self.counts) <= 0:
            raise ValueError("bucket counts must be non-negative and not all zero")
        if not all(math.isfinite(b) for b in self.bounds) or self.low > self.bounds[0]:
            raise ValueError("bounds must be finite and start at or above low")
        total, running = sum(self.counts), 0.0
        cumulative = []
        for count in self.counts:
            running += count
            cumulative.append(running / total)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @classmethod
    def constant(cls, seconds: float) -> Distribution:
        return cls((seconds,), (1.0,), low=seconds)

    def scaled(self, factor: float) -> Distribution:
        return Distribution(
            tuple(b * factor for b in self.bounds), self.counts, low=self.low * factor
        )

    def sample(self, u: float) -> float:
        """The latency at quantile ``u`` in [0, 1)."""
        i = min(bisect.bisect_right(self._cumulative, u), len(self.bounds) - 1)
        below = self._cumulative[i - 1] if i > 0 else 0.0
        start = self.bounds[i - 1] if i > 0 else self.low
        width = self._cumulative[i] - below
        frac = 0.0 if width <= 0 else (u - below) / width
        return start + (self.bounds[i] - start) * min(max(frac, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Replica:
    """One replica's WARS distributions."""

    w: Distribution
    a: Distribution
    r: Distribution
    s: Distribution


@dataclass(frozen=True, slots=True)
class Coordinators:
    """Where the calls are coordinated (see the module rules)."""

    write: Distribution  # the coordinator's own replica: a local write's service time
    read: Distribution  # and a local read's
    share: float  # of calls whose coordinator holds a replica of the key
    same: bool  # the read goes through the write's coordinator

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError("the share of calls a replica coordinates is in 0..1")


@dataclass(frozen=True, slots=True)
class Prediction:
    r: int
    w: int
    consistent: dict[float, float]  # t (ms) -> P(consistent read)
    k_staleness: dict[int, float]  # k -> P(the read is one of the last k versions)
    read_ms: tuple[float, float]  # p50, p99
    write_ms: tuple[float, float]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def predict(
    replicas: Sequence[Replica],
    r: int,
    w: int,
    t_ms: Sequence[float],
    ks: Sequence[int],
    trials: int,
    rng: Random,
    coordinators: Coordinators | None = None,
) -> Prediction:
    n = len(replicas)
    if not (1 <= r <= n and 1 <= w <= n):
        raise ValueError(f"R={r} and W={w} must be in 1..{n}")
    if trials < 1:
        raise ValueError("at least one trial")
    ts = [t / 1000 for t in t_ms]
    consistent = [0] * len(ts)
    reads: list[float] = []
    writes: list[float] = []
    for _ in range(trials):
        draws = [
            (
                rep.w.sample(rng.random()),
                rep.a.sample(rng.random()),
                rep.r.sample(rng.random()),
                rep.s.sample(rng.random()),
            )
            for rep in replicas
        ]
        reader = None if coordinators is None else _coordinate(draws, coordinators, rng)
        commit = sorted(wi + ai for wi, ai, _, _ in draws)[w - 1]
        by_speed = sorted(range(n), key=lambda i: draws[i][2] + draws[i][3])
        if reader is None:
            answers = by_speed[:r]
        else:  # its own answer counts first, then the fastest others
            answers = [reader, *(i for i in by_speed if i != reader)][:r]
        reads.append(max(draws[i][2] + draws[i][3] for i in answers))
        writes.append(commit)
        for j, t in enumerate(ts):
            if any(draws[i][0] <= commit + t + draws[i][2] for i in answers):
                consistent[j] += 1
    p = {t_ms[j]: consistent[j] / trials for j in range(len(ts))}
    fresh_now = p[t_ms[0]] if t_ms else 1.0
    return Prediction(
        r,
        w,
        p,
        {k: 1 - (1 - fresh_now) ** k for k in ks},
        (_quantile(reads, 0.5) * 1000, _quantile(reads, 0.99) * 1000),
        (_quantile(writes, 0.5) * 1000, _quantile(writes, 0.99) * 1000),
    )


Draw = tuple[float, float, float, float]


def _coordinate(draws: list[Draw], c: Coordinators, rng: Random) -> int | None:
    """Make the write's and the read's coordinators' replicas (if any) local; returns the
    read coordinator's replica, or None when the read's coordinator holds none."""
    n = len(draws)

    def pick() -> int | None:  # one of the key's replicas, or None: some other node
        return int(rng.random() * n) if rng.random() < c.share else None

    writer = pick()
    if writer is not None:
        _, _, r, s = draws[writer]
        draws[writer] = (c.write.sample(rng.random()), 0.0, r, s)
    reader = writer if c.same else pick()
    if reader is not None:
        w, a, _, _ = draws[reader]
        draws[reader] = (w, a, c.read.sample(rng.random()), 0.0)
    return reader


def predict_all(
    replicas: Sequence[Replica],
    t_ms: Sequence[float],
    ks: Sequence[int],
    trials: int,
    rng: Random,
    coordinators: Coordinators | None = None,
) -> list[Prediction]:
    """A prediction for every R, W in 1..N, in (R, W) order."""
    n = len(replicas)
    return [
        predict(replicas, r, w, t_ms, ks, trials, rng, coordinators)
        for r in range(1, n + 1)
        for w in range(1, n + 1)
    ]


def within_budget(predictions: Sequence[Prediction], budget_p99_ms: float) -> list[Prediction]:
    """The settings whose read and write p99 both fit the budget."""
    return [p for p in predictions if max(p.read_ms[1], p.write_ms[1]) <= budget_p99_ms]


def freshest(predictions: Sequence[Prediction]) -> Prediction | None:
    """The most likely to read fresh right after a write; ties go to the faster one."""
    if not predictions:
        return None
    return max(
        predictions,
        key=lambda p: (next(iter(p.consistent.values()), 1.0), -max(p.read_ms[1], p.write_ms[1])),
    )
