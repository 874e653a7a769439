"""Incremental digests checked against obvious models: per-key sharing, brute-force buckets,
and trees rebuilt from scratch."""

from __future__ import annotations

import itertools
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.core import digests, merkle
from kvstore.core.digests import TOKEN_END, DigestIndex, DigestTree
from kvstore.core.merkle import Entry
from kvstore.core.ring import Ring, token
from kvstore.core.version import Timestamp

NODES = ["n1", "n2", "n3", "n4", "n5"]


def entry(key: bytes, wall: int, tomb: bool = False, node: str = "n1") -> Entry:
    return Entry(key, Timestamp(wall, 0, node), tomb)


def test_shared_ranges_match_per_key_sharing() -> None:
    ring = Ring(NODES, 16)
    rng = random.Random(3)
    keys = [b"k%d" % rng.randrange(10**9) for _ in range(4000)]
    # the vnode tokens themselves are where off-by-ones hide
    probes = [t for t in ring.tokens] + [t - 1 for t in ring.tokens] + [0, TOKEN_END - 1]
    for a, b in (("n1", "n2"), ("n3", "n5"), ("n4", "n1")):
        ranges = digests.shared_ranges(ring, 3, a, b)
        assert all(lo < hi for lo, hi in ranges)
        assert all(x[1] < y[0] for x, y in itertools.pairwise(ranges))  # merged
        for key in keys:
            inside = any(lo <= token(key) < hi for lo, hi in ranges)
            assert inside == merkle.shared(ring, key, 3, a, b)
        for t in probes:
            inside = any(lo <= t < hi for lo, hi in ranges)
            primaries = ring.walk_at(t)[:3]
            assert inside == (a in primaries and b in primaries)


@given(
    cuts=st.lists(st.integers(0, TOKEN_END), min_size=0, max_size=12, unique=True),
    depth=st.integers(1, 6),
)
def test_classify_against_brute_force(cuts: list[int], depth: int) -> None:
    points = sorted(cuts)
    ranges = [(lo, hi) for lo, hi in zip(points[0::2], points[1::2], strict=False) if lo < hi]
    inside, boundary = digests.classify(ranges, depth)
    whole = {b for run in inside for b in run}
    for b in range(1 << depth):
        lo, hi = digests.bucket_range(b, depth)
        covered = any(r_lo <= lo and hi <= r_hi for r_lo, r_hi in ranges)
        touched = any(r_lo < hi and lo < r_hi for r_lo, r_hi in ranges)
        assert (b in whole) == covered
        assert (b in boundary) == (touched and not covered)


@settings(max_examples=60)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 5), st.booleans(), st.booleans()),
        max_size=60,
    )
)
def test_index_equals_a_rebuild(steps: list[tuple[int, int, bool, bool]]) -> None:
    # a dict of current entries is the model; the index only ever sees old -> new
    index = DigestIndex(4)
    state: dict[bytes, Entry] = {}
    for k, wall, tomb, remove in steps:
        key = b"key%d" % k
        old = state.get(key)
        new = None if remove else entry(key, wall, tomb)
        index.change(key, old, new)
        if new is None:
            state.pop(key, None)
        else:
            state[key] = new
    rebuilt = DigestIndex(4)
    for e in state.values():
        rebuilt.change(e.key, None, e)
    assert index.same_as(rebuilt) and index.entries == len(state)


def test_digests_cover_the_timestamp_and_the_tombstone() -> None:
    base = entry(b"k", 5)
    others = [entry(b"k", 6), entry(b"k", 5, True), entry(b"k", 5, node="n2"), entry(b"k2", 5),
              Entry(b"k", Timestamp(5, 1, "n1"), False)]  # fmt: skip
    assert len({digests.as_bytes(digests.lanes_of(e)) for e in [base, *others]}) == 1 + len(others)
    # length-prefixed: moving a byte between key and node is a different entry
    assert digests.entry_digest(b"ab", 1, 0, "c", False) != digests.entry_digest(
        b"a", 1, 0, "bc", False
    )


def _value(leaves: np.ndarray, lo: int, hi: int) -> bytes:
    total = np.zeros(2, dtype=np.uint64)
    for row in leaves[lo:hi]:
        total += row
    return digests.as_bytes(total)


def test_tree_nodes_are_sums_of_their_leaves_and_top_down_finds_changes() -> None:
    rng = np.random.default_rng(5)
    depth = 8
    leaves = rng.integers(0, 2**64, size=(1 << depth, 2), dtype=np.uint64, endpoint=False)
    leaves[rng.random(1 << depth) < 0.5] = 0
    mine = DigestTree(depth, leaves)
    for level in range(depth + 1):  # every node against a plain sum of its leaves
        span = 1 << (depth - level)
        expected = [_value(leaves, i * span, (i + 1) * span) for i in range(1 << level)]
        assert mine.hashes(level, list(range(1 << level))) == expected
    assert mine.root == _value(leaves, 0, 1 << depth)
    changed = sorted(int(i) for i in rng.choice(1 << depth, 5, replace=False))
    theirs_leaves = leaves.copy()
    theirs_leaves[changed, 0] += np.uint64(1)
    theirs = DigestTree(depth, theirs_leaves)
    assert theirs.root != mine.root
    assert merkle.diff(mine, theirs, step=3) == changed  # type: ignore[arg-type]


def test_pair_tree_sums_only_shared_entries() -> None:
    # The pair's leaf values: inside buckets from the index, boundary buckets from their
    # shared entries; the result equals summing the shared entries bucket by bucket.
    ring = Ring(NODES, 16)
    depth = 8
    index = DigestIndex(depth)
    stored = [entry(b"key-%d" % i, 10 + i % 7, i % 9 == 0) for i in range(3000)]
    for e in stored:
        index.change(e.key, None, e)
    ranges = digests.shared_ranges(ring, 3, "n1", "n2")
    inside, boundary = digests.classify(ranges, depth)
    edge = {
        b: digests.sum_entries(
            e
            for e in stored
            if index.bucket(e.key) == b and merkle.shared(ring, e.key, 3, "n1", "n2")
        )
        for b in boundary
    }
    got = digests.leaf_values(index.sums, inside, edge, depth)
    whole = {b for run in inside for b in run}
    assert whole and edge
    for b in range(1 << depth):
        expected = digests.sum_entries(
            e
            for e in stored
            if index.bucket(e.key) == b and merkle.shared(ring, e.key, 3, "n1", "n2")
        )
        assert (got[b] == expected).all(), b
        if b not in whole and b not in edge:
            assert not got[b].any()


def test_ranges_of_merges_neighbours() -> None:
    assert digests.ranges_of([3, 1, 2, 7], 4) == [
        (1 << 60, 4 << 60),
        (7 << 60, 8 << 60),
    ]
    assert digests.ranges_of([15], 4) == [(15 << 60, TOKEN_END)]


def test_coarser_depths_sum_the_finer_buckets() -> None:
    fine = DigestIndex(10)
    stored = [entry(b"key-%d" % i, 3 + i % 5, i % 4 == 0) for i in range(2000)]
    for e in stored:
        fine.change(e.key, None, e)
    for depth in (1, 4, 7, 10):
        coarse = DigestIndex(depth)
        for e in stored:
            coarse.change(e.key, None, e)
        assert (fine.at_depth(depth) == coarse.sums).all()
    assert fine.tree_depth() == 10  # 2,000 entries: as deep as the index goes
    small = DigestIndex(10)
    small.change(b"k", None, entry(b"k", 1))
    assert small.tree_depth() == 1


def test_rows_at_open_count_as_entries_do() -> None:
    stored = [entry(b"key-%d" % i, 3 + i % 5, i % 4 == 0, f"n{i % 3}") for i in range(500)]
    one_by_one = DigestIndex(8)
    for e in stored:
        one_by_one.change(e.key, None, e)
    streamed = DigestIndex(8)
    streamed.add_rows((e.key, e.ts.wall, e.ts.logical, e.ts.node, int(e.tombstone)) for e in stored)
    assert streamed.same_as(one_by_one)
