"""Hint expiry against the obvious rule: drop what was stored more than a window ago."""

from __future__ import annotations

from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import given

from kvstore.core.hints import expired


@dataclass(frozen=True)
class Stored:
    hint_id: int
    stored_at_us: int


def test_a_hint_exactly_one_window_old_is_kept() -> None:
    hints = [Stored(1, 100), Stored(2, 899), Stored(3, 900), Stored(4, 901)]
    assert expired(hints, now_us=1900, window_us=1000) == [1, 2]


@given(
    st.lists(st.integers(0, 50), max_size=12),
    st.integers(0, 60),
    st.integers(0, 20),
)
def test_expiry_matches_obvious_model(stored_at: list[int], now: int, window: int) -> None:
    hints = [Stored(i, at) for i, at in enumerate(stored_at)]
    oldest_kept = now - window  # anything stored before this instant is too old
    assert expired(hints, now, window) == [i for i, at in enumerate(stored_at) if at < oldest_kept]
