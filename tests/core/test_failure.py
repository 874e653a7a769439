"""Phi-accrual detector: detection time, suspicion, recovery, adaptation bounds."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from kvstore.core.failure import DOWN, SUSPECT, UP, Membership, PhiDetector


def test_silent_peer_goes_suspect_then_down_at_the_detection_time() -> None:
    d = PhiDetector(0.1, 1.0, start_s=0.0)
    for i in range(1, 21):
        d.heard(i * 0.1)
    last = 2.0
    assert d.state(last + 0.3) == UP
    assert d.state(last + 0.6) == SUSPECT
    assert d.state(last + 0.99) == SUSPECT
    assert d.state(last + 1.0) == DOWN
    d.heard(last + 5.0)
    assert d.state(last + 5.01) == UP


def test_never_heard_peer_gets_one_detection_time() -> None:
    d = PhiDetector(0.2, 1.5, start_s=100.0)
    assert d.state(101.0) != DOWN
    assert d.state(101.5) == DOWN


@given(st.lists(st.floats(0.01, 5.0), min_size=1, max_size=60))
def test_detection_never_exceeds_twice_the_configured_time(gaps: list[float]) -> None:
    d = PhiDetector(0.1, 1.0, start_s=0.0)
    now = 0.0
    for gap in gaps:
        now += gap
        d.heard(now)
    assert d.state(now + 2.0 + 1e-9) == DOWN
    assert d.state(now + 0.99) != DOWN  # never faster than at the nominal rate


def test_membership_reports_down_peers() -> None:
    m = Membership("n1", ["n2", "n3"], 0.1, 0.5, start_s=0.0)
    m.heard("n2", 0.4)
    assert m.down(0.7) == {"n3"}
    assert m.is_up("n2", 0.7) and not m.is_up("n3", 0.7) and m.is_up("n1", 0.7)
    views = {v.node: v for v in m.views(0.7)}
    assert views["n3"].state == DOWN and views["n2"].last_heard_s == pytest.approx(0.3)


def test_a_peer_is_heard_only_once_something_came_from_it() -> None:
    # "up" alone is no proof of a working link: a peer never heard from is up for its
    # first detection time; LocalCluster.start waits on ``heard`` instead.
    m = Membership("n1", ["n2", "n3"], 0.1, 0.5, start_s=0.0)
    m.heard("n2", 0.05)
    views = {v.node: v for v in m.views(0.1)}
    assert views["n3"].state == UP and not views["n3"].heard
    assert views["n2"].heard


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        PhiDetector(1.0, 0.5, 0.0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0.0, 3.0), st.booleans()),
        max_size=60,
    )
)
def test_membership_down_always_matches_each_detectors_state(
    steps: list[tuple[str, float, bool]],
) -> None:
    """down() keeps its answer between changes; it must never differ from asking every
    detector afresh, whatever mix of heartbeats and time passing."""
    membership = Membership("me", ["a", "b", "c"], 0.1, 0.6, 0.0)
    now = 0.0
    for peer, advance, heard in steps:
        now += advance
        if heard:
            membership.heard(peer, now)
        fresh = {p for p, d in membership.detectors.items() if d.state(now) == "down"}
        assert membership.down(now) == fresh
