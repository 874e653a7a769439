"""The clock guard against an obvious model: the median of fresh NTP-style estimates."""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from kvstore.core.clock_guard import ClockGuard

DRIFT_US = 10_000_000


def test_a_node_ahead_of_every_peer_is_refused_and_recovers() -> None:
    guard = ClockGuard(peers=4, max_drift_us=DRIFT_US, fresh_s=2.0)
    assert guard.problem(0.0) is None  # nothing known yet: no reason to stop
    for peer in ("a", "b", "c"):
        # our clock reads 60 s more than theirs; the round trip took 2 ms
        guard.sample(peer, 60_000_000, 60_002_000, 1_000, now=0.0)
    problem = guard.problem(0.0)
    assert problem is not None and "60000 ms ahead of its peers'" in problem
    # fixed clock: fresh samples say 0 ms; the old ones age out
    for peer in ("a", "b", "c"):
        guard.sample(peer, 0, 2_000, 1_000, now=1.0)
    assert guard.problem(1.0) is None


def test_one_lying_peer_cannot_stop_a_node() -> None:
    guard = ClockGuard(peers=4, max_drift_us=DRIFT_US, fresh_s=2.0)
    guard.sample("a", 0, 0, 3_600_000_000, now=0.0)  # claims an hour: an outlier
    guard.sample("b", 0, 0, 0, now=0.0)
    guard.sample("c", 0, 0, 0, now=0.0)
    assert guard.problem(0.0) is None


def test_too_few_fresh_estimates_say_nothing() -> None:
    guard = ClockGuard(peers=4, max_drift_us=DRIFT_US, fresh_s=2.0)
    guard.sample("a", 60_000_000, 60_000_000, 0, now=0.0)
    assert guard.offset_us(0.0) is None  # one of four peers is not enough
    guard.sample("b", 60_000_000, 60_000_000, 0, now=0.0)
    assert guard.offset_us(0.0) == 60_000_000
    assert guard.offset_us(5.0) is None  # both estimates went stale


@given(
    st.dictionaries(
        st.sampled_from("abcdef"),
        st.tuples(
            st.floats(0, 10),
            st.integers(0, 10**12),
            st.integers(0, 10**6),
            st.integers(0, 10**12),
        ),
        min_size=1,
    ),
    st.floats(0, 12),
)
def test_offset_is_the_median_of_fresh_estimates(
    samples: dict[str, tuple[float, int, int, int]], now: float
) -> None:
    guard = ClockGuard(peers=6, max_drift_us=DRIFT_US, fresh_s=3.0)
    for peer, (when, sent, rtt, remote) in samples.items():
        guard.sample(peer, sent, sent + rtt, remote, now=when)
    fresh = [
        (sent + sent + rtt) // 2 - remote
        for when, sent, rtt, remote in samples.values()
        if now - when <= 3.0
    ]
    expected = int(statistics.median(fresh)) if fresh and 2 * len(fresh) >= 6 else None
    assert guard.offset_us(now) == expected
    refused = guard.problem(now) is not None
    assert refused == (expected is not None and abs(expected) > DRIFT_US)
