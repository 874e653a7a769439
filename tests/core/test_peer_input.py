"""Peer input validation: every field of a replica message is checked before use."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.core.peer_input import (
    MAX_LOGICAL,
    MAX_WALL,
    ClockDriftError,
    PeerInputError,
    PeerLimits,
)
from kvstore.core.version import Timestamp

LIMITS = PeerLimits(16, 64, frozenset({"n1", "n2", "n3"}), 10_000_000)


def test_a_valid_record_passes_unchanged() -> None:
    record = LIMITS.record(b"k", b"v", 5, 1, "n2")
    assert (record.key, record.value, record.ts) == (b"k", b"v", Timestamp(5, 1, "n2"))
    assert LIMITS.record(b"k", None, 0, 0, "n1").value is None  # a tombstone


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ((b"", b"v", 1, 0, "n1"), "non-empty"),
        ((7, b"v", 1, 0, "n1"), "key must be"),
        ((b"k" * 17, b"v", 1, 0, "n1"), "limit is 16"),
        ((b"k", "v", 1, 0, "n1"), "value must be bytes"),
        ((b"k", b"v" * 65, 1, 0, "n1"), "limit is 64"),
        ((b"k", b"v", MAX_WALL + 1, 0, "n1"), "wall"),
        ((b"k", b"v", -1, 0, "n1"), "wall"),
        ((b"k", b"v", 1.5, 0, "n1"), "wall"),
        ((b"k", b"v", True, 0, "n1"), "wall"),
        ((b"k", b"v", 1, MAX_LOGICAL + 1, "n1"), "logical"),
        ((b"k", b"v", 1, 0, "n9"), "not a node"),
        ((b"k", b"v", 1, 0, b"n1"), "not a node"),
    ],
)
def test_bad_fields_are_named(fields: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(PeerInputError, match=fragment):
        LIMITS.record(*fields)


def test_a_timestamp_far_ahead_is_refused_within_the_bound_accepted() -> None:
    now = 1_000_000_000
    LIMITS.check_drift(Timestamp(now + 10_000_000, 0, "n1"), now)  # exactly the bound
    with pytest.raises(ClockDriftError, match="ahead of this node's clock"):
        LIMITS.check_drift(Timestamp(now + 10_000_001, 0, "n1"), now)
    LIMITS.check_drift(Timestamp(0, 0, "n1"), now)  # the past is always fine


anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary() | st.text(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=8,
)


@given(st.lists(anything, min_size=5, max_size=5))
def test_arbitrary_fields_either_pass_validated_or_raise_peer_input_error(
    fields: list[Any],
) -> None:
    try:
        record = LIMITS.record(*fields)
    except PeerInputError:
        return
    assert isinstance(record.key, bytes) and 0 < len(record.key) <= 16
    assert record.value is None or len(record.value) <= 64
    assert 0 <= record.ts.wall <= MAX_WALL and 0 <= record.ts.logical <= MAX_LOGICAL
    assert record.ts.node in LIMITS.nodes
