"""The PBS predictor against answers known exactly (constant latencies), and its
invariants on random distributions: R + W > N is always consistent, more time never
makes a read staler, latencies are order statistics of the draws."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.core.pbs import (
    Coordinators,
    Distribution,
    Replica,
    freshest,
    predict,
    predict_all,
    within_budget,
)

ms = 0.001


def const(seconds: float) -> Distribution:
    return Distribution.constant(seconds)


def test_constant_latencies_give_the_exact_answer() -> None:
    # Replica 0 acks the write first (1+1 ms) so W=1 commits at 2 ms; replica 1 answers
    # reads fastest (0.1 + 0.1 ms) but gets the write only at 10 ms. A read at t reaches
    # replica 1 at 2 + t + 0.1 ms: fresh iff 10 <= 2.1 + t, i.e. t >= 7.9 ms.
    fast_writer = Replica(const(1 * ms), const(1 * ms), const(5 * ms), const(5 * ms))
    fast_reader = Replica(const(10 * ms), const(1 * ms), const(0.1 * ms), const(0.1 * ms))
    slow = Replica(const(10 * ms), const(1 * ms), const(5 * ms), const(5 * ms))
    p = predict(
        [fast_writer, fast_reader, slow], 1, 1, [0, 7.8, 7.9, 100], [1, 2], 50, random.Random(1)
    )
    assert p.consistent == {0: 0.0, 7.8: 0.0, 7.9: 1.0, 100: 1.0}
    assert p.write_ms == pytest.approx((2.0, 2.0))
    assert p.read_ms == pytest.approx((0.2, 0.2))
    assert p.k_staleness == {1: 0.0, 2: 0.0}
    # R=2: replica 0 is among the two fastest readers (10 ms) with replica 1: fresh at once
    assert predict(
        [fast_writer, fast_reader, slow], 2, 1, [0], [1], 50, random.Random(1)
    ).consistent == {0: 1.0}


def test_a_coordinator_that_holds_a_replica_works_on_it_without_a_hop() -> None:
    # Every remote replica: the write lands at 5 ms, acks 1 ms later, reads take 1+1 ms.
    # A coordinator's own replica: writes in 2 ms, reads in 0.5 ms, no hop either way.
    remote = Replica(const(5 * ms), const(1 * ms), const(1 * ms), const(1 * ms))
    local = Coordinators(const(2 * ms), const(0.5 * ms), share=1.0, same=True)
    reps = [remote] * 3
    # Ring-aware clients: the writer's own replica commits W=1 at 2 ms and the read is
    # answered by that same replica (0.5 ms): always fresh, read 0.5 ms, write 2 ms.
    p = predict(reps, 1, 1, [0], [1], 200, random.Random(1), local)
    assert p.consistent == {0: 1.0}
    assert p.write_ms == pytest.approx((2.0, 2.0)) and p.read_ms == pytest.approx((0.5, 0.5))
    # Its own answer counts even when a remote one would come first (a targeted read
    # asks it first): a slow local read (3 ms) is still fresh, and takes 3 ms.
    slow_local = Coordinators(const(2 * ms), const(3 * ms), share=1.0, same=True)
    p = predict(reps, 1, 1, [0], [1], 200, random.Random(1), slow_local)
    assert p.consistent == {0: 1.0} and p.read_ms == pytest.approx((3.0, 3.0))
    # Independent coordinators, every one a replica: the read's is the write's a third of
    # the time (fresh); otherwise it holds the write at 5 ms but reads at 2 + t + 0.5 ms:
    # stale until t = 2.5 ms.
    apart = Coordinators(const(2 * ms), const(0.5 * ms), share=1.0, same=False)
    p = predict(reps, 1, 1, [0, 2.4, 2.5], [1], 6000, random.Random(2), apart)
    assert p.consistent[0] == pytest.approx(1 / 3, abs=0.03)
    assert p.consistent[2.4] == p.consistent[0] and p.consistent[2.5] == 1.0
    # No coordinator holds a replica: plain PBS (commit 6 ms, the write is everywhere)
    none = Coordinators(const(2 * ms), const(0.5 * ms), share=0.0, same=False)
    assert predict(reps, 1, 1, [0], [1], 100, random.Random(3), none).consistent == {0: 1.0}
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Coordinators(const(ms), const(ms), share=1.5, same=True)


def test_a_histogram_samples_within_its_buckets_in_proportion() -> None:
    d = Distribution((0.001, 0.002, 0.010), (1, 1, 2))
    rng = random.Random(3)
    xs = [d.sample(rng.random()) for _ in range(20_000)]
    assert min(xs) >= 0 and max(xs) <= 0.010
    share_last = sum(x > 0.002 for x in xs) / len(xs)
    assert share_last == pytest.approx(0.5, abs=0.02)
    assert d.sample(0.0) == 0.0 and d.sample(0.999999) == pytest.approx(0.010, rel=1e-3)


@pytest.mark.parametrize(
    ("bounds", "counts"),
    [((), ()), ((0.2, 0.1), (1, 1)), ((0.1,), (0,)), ((0.1,), (-1,)), ((float("inf"),), (1,))],
)
def test_bad_histograms_are_refused(bounds: tuple[float, ...], counts: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        Distribution(bounds, counts)


histograms = st.lists(
    st.tuples(st.floats(0.0001, 0.05), st.integers(1, 20)), min_size=1, max_size=5
).map(lambda pairs: Distribution(tuple(sorted(b for b, _ in pairs)), tuple(c for _, c in pairs)))
replicas = st.builds(Replica, histograms, histograms, histograms, histograms)


coordinators = (
    st.builds(Coordinators, histograms, histograms, st.floats(0.0, 1.0), st.booleans()) | st.none()
)


@settings(max_examples=40, deadline=None)
@given(st.lists(replicas, min_size=3, max_size=3), st.integers(0, 1000), coordinators)
def test_overlapping_quorums_are_always_consistent_and_time_only_helps(
    reps: list[Replica], seed: int, where: Coordinators | None
) -> None:
    ts = [0, 1, 5, 20, 100]
    for p in predict_all(reps, ts, [1, 3], 60, random.Random(seed), where):
        values = [p.consistent[t] for t in ts]
        assert values == sorted(values), (p.r, p.w, values)  # monotone in t
        if p.r + p.w > 3:
            assert values == [1.0] * len(ts)
        assert p.k_staleness[3] >= p.k_staleness[1] >= values[0] - 1e-12
        assert p.read_ms[0] <= p.read_ms[1] and p.write_ms[0] <= p.write_ms[1]


def test_more_acks_or_more_answers_never_predict_staler_reads() -> None:
    rng_reps = random.Random(7)
    lat = Distribution((0.0005, 0.001, 0.005, 0.02), (10, 30, 8, 2))
    reps = [Replica(lat, lat, lat, lat) for _ in range(3)]
    table = {(p.r, p.w): p for p in predict_all(reps, [0], [1], 4000, rng_reps)}
    assert table[(1, 1)].consistent[0] < 1.0  # a real chance of a stale read
    assert table[(1, 2)].consistent[0] >= table[(1, 1)].consistent[0] - 0.03
    assert table[(2, 1)].consistent[0] >= table[(1, 1)].consistent[0] - 0.03
    assert table[(1, 3)].write_ms[1] >= table[(1, 1)].write_ms[1]


def test_budget_and_freshest() -> None:
    lat = Distribution((0.001, 0.004), (9, 1))
    reps = [Replica(lat, lat, lat, lat) for _ in range(3)]
    predictions = predict_all(reps, [0], [1], 500, random.Random(2))
    fits = within_budget(predictions, budget_p99_ms=8.0)
    assert fits and all(max(p.read_ms[1], p.write_ms[1]) <= 8.0 for p in fits)
    best = freshest(fits)
    assert best is not None and best.consistent[0] == max(p.consistent[0] for p in fits)
    assert within_budget(predictions, budget_p99_ms=0.0001) == []
    assert freshest([]) is None
