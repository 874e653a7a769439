"""Hybrid logical clock: monotonic per node and causal across nodes, under any skew."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from kvstore.core.hlc import HybridClock
from kvstore.core.version import Record, Timestamp, newer

events = st.lists(
    st.tuples(
        st.sampled_from(["now", "observe"]),
        st.integers(0, 1000),  # physical reading, may go backwards
        st.integers(0, 1000),  # remote wall
        st.integers(0, 5),  # remote logical
    ),
    max_size=60,
)


@given(events)
def test_now_is_strictly_increasing_and_exceeds_observed(
    script: list[tuple[str, int, int, int]],
) -> None:
    clock = HybridClock("a")
    last: Timestamp | None = None
    floor: Timestamp | None = None
    for kind, physical, rwall, rlogical in script:
        if kind == "observe":
            seen = Timestamp(rwall, rlogical, "b")
            clock.observe(seen, physical)
            floor = seen if floor is None else max(floor, seen)
            continue
        ts = clock.now(physical)
        assert last is None or ts > last
        assert floor is None or ts > floor
        assert ts.wall >= physical
        last = ts


def test_ties_break_by_node_id() -> None:
    a = Record(b"k", b"1", Timestamp(5, 0, "n1"))
    b = Record(b"k", b"2", Timestamp(5, 0, "n2"))
    assert newer(a, b) is b
    assert newer(b, a) is b
    assert newer(None, a) is a and newer(a, None) is a


def test_skewed_clock_wins_lww() -> None:
    """Why lost writes happen: a node whose clock runs ahead beats a later write."""
    fast, slow = HybridClock("fast"), HybridClock("slow")
    early = fast.now(10_000)  # happened first, on a clock 10 ms ahead
    late = slow.now(1_000)  # happened later in real time
    assert early > late
