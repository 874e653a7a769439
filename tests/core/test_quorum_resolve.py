"""Quorum tally against a slow obvious version; read resolution against max()."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from kvstore.core.quorum import Outcome, Tally
from kvstore.core.resolve import resolve
from kvstore.core.version import Record, Timestamp


def obvious(needed: int, total: int, replies: list[bool]) -> Outcome:
    acks = fails = 0
    for ok in replies:
        acks += ok
        fails += not ok
        if acks >= needed:
            return Outcome.REACHED
        if total - fails < needed:
            return Outcome.FAILED
    return Outcome.FAILED if total < needed else Outcome.PENDING


@given(st.integers(1, 7), st.integers(0, 7), st.lists(st.booleans(), max_size=7))
def test_tally_matches_obvious_model(needed: int, total: int, replies: list[bool]) -> None:
    replies = replies[:total]
    tally = Tally(needed, total)
    for ok in replies:
        before = tally.outcome
        after = tally.ack() if ok else tally.fail()
        if before is not Outcome.PENDING:
            assert after is before  # decided outcomes never flip
    assert tally.outcome is obvious(needed, total, replies)


versions = st.one_of(
    st.none(),
    st.builds(
        lambda w, lg, n, tomb: Record(b"k", None if tomb else b"v%d" % w, Timestamp(w, lg, n)),
        st.integers(0, 5),
        st.integers(0, 2),
        st.sampled_from(["a", "b", "c"]),
        st.booleans(),
    ),
)


@given(st.dictionaries(st.sampled_from(["n1", "n2", "n3", "n4"]), versions, max_size=4))
def test_resolution_picks_max_and_lists_exactly_the_stale(
    replies: dict[str, Record | None],
) -> None:
    result = resolve(replies)
    present = [r for r in replies.values() if r is not None]
    if not present:
        assert result.winner is None and result.stale == ()
        return
    best = max(present, key=lambda r: r.ts)
    assert result.winner is not None and result.winner.ts == best.ts
    expected = {n for n, r in replies.items() if r is None or r.ts < best.ts}
    assert set(result.stale) == expected
