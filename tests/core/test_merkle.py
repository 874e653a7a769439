"""Merkle trees and their top-down diff, against a naive leaf-by-leaf comparison."""

from __future__ import annotations

from collections import defaultdict

import hypothesis.strategies as st
from hypothesis import given, settings

from kvstore.core import merkle
from kvstore.core.merkle import Entry, MerkleTree, TopDown
from kvstore.core.ring import Ring
from kvstore.core.version import Timestamp

keys = st.binary(min_size=1, max_size=6)
stamps = st.builds(
    Timestamp, st.integers(0, 5), st.integers(0, 2), st.sampled_from(["a", "b", "c"])
)
entries = st.dictionaries(keys, st.tuples(stamps, st.booleans()), max_size=60)


def as_entries(raw: dict[bytes, tuple[Timestamp, bool]]) -> list[Entry]:
    return [Entry(k, ts, tomb) for k, (ts, tomb) in raw.items()]


def naive_diff(a: list[Entry], b: list[Entry], depth: int) -> list[int]:
    """Compare every leaf's sorted contents directly, no hashing."""
    leaves_a: dict[int, list[Entry]] = defaultdict(list)
    leaves_b: dict[int, list[Entry]] = defaultdict(list)
    for e in a:
        leaves_a[merkle.leaf_of(e.key, depth)].append(e)
    for e in b:
        leaves_b[merkle.leaf_of(e.key, depth)].append(e)
    return sorted(
        i
        for i in set(leaves_a) | set(leaves_b)
        if sorted(leaves_a.get(i, [])) != sorted(leaves_b.get(i, []))
    )


@st.composite
def replica_pairs(draw: st.DrawFn) -> tuple[list[Entry], list[Entry]]:
    """Two replicas: a common base, then each side's own drift (new, changed, missing)."""
    base = draw(entries)
    a = dict(base)
    b = dict(base)
    a.update(draw(entries))
    b.update(draw(entries))
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=5)) if base else []:
        b.pop(key, None)
    return as_entries(a), as_entries(b)


@settings(max_examples=300, deadline=None)
@given(pair=replica_pairs(), depth=st.integers(0, 8), step=st.integers(1, 5))
def test_diff_finds_exactly_the_differing_leaves(
    pair: tuple[list[Entry], list[Entry]], depth: int, step: int
) -> None:
    a, b = pair
    found = merkle.diff(MerkleTree(depth, a), MerkleTree(depth, b), step)
    assert found == naive_diff(a, b, depth)
    assert merkle.diff(MerkleTree(depth, b), MerkleTree(depth, a), step) == found


@settings(max_examples=200, deadline=None)
@given(raw=entries, depth=st.integers(0, 8), seed=st.randoms(use_true_random=False))
def test_hashes_ignore_insertion_order(
    raw: dict[bytes, tuple[Timestamp, bool]], depth: int, seed: object
) -> None:
    items = as_entries(raw)
    shuffled = list(items)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    assert MerkleTree(depth, items).root == MerkleTree(depth, shuffled).root


@settings(max_examples=200, deadline=None)
@given(pair=replica_pairs(), depth=st.integers(1, 8), step=st.integers(1, 4))
def test_only_children_of_differing_nodes_are_compared(
    pair: tuple[list[Entry], list[Entry]], depth: int, step: int
) -> None:
    """Top-down: every requested node lies under a node already seen to differ."""
    a, b = pair
    mine, theirs = MerkleTree(depth, a), MerkleTree(depth, b)
    walk = TopDown(mine, step)
    differing_at: dict[int, set[int]] = {}
    previous_level = -1
    while (ask := walk.request()) is not None:
        level, indexes = ask
        if previous_level >= 0:
            span = level - previous_level
            parents = differing_at[previous_level]
            assert all(i >> span in parents for i in indexes)
        answer = theirs.hashes(level, indexes)
        differing_at[level] = {
            i
            for i, x, y in zip(indexes, mine.hashes(level, indexes), answer, strict=True)
            if x != y
        }
        previous_level = level
        walk.receive(answer)
    if mine.root == theirs.root:
        assert walk.compared == 1 and walk.leaves == []


@settings(max_examples=300, deadline=None)
@given(pair=replica_pairs())
def test_reconcile_moves_the_newer_version_each_way(
    pair: tuple[list[Entry], list[Entry]],
) -> None:
    a, b = pair
    pull, push = merkle.reconcile(a, b)
    have_a = {e.key: e.ts for e in a}
    have_b = {e.key: e.ts for e in b}
    # after copying, both sides hold the max of the two, key by key
    merged_a = dict(have_a)
    merged_b = dict(have_b)
    for k in pull:
        merged_a[k] = have_b[k]
    for k in push:
        merged_b[k] = have_a[k]
    assert merged_a == merged_b
    for k, ts in merged_a.items():
        assert ts == max(t for t in (have_a.get(k), have_b.get(k)) if t is not None)
    assert not set(pull) & set(push)


def test_equal_sets_have_equal_roots_and_a_change_is_found() -> None:
    ts = Timestamp(10, 0, "a")
    base = [Entry(f"k{i}".encode(), ts, False) for i in range(500)]
    assert MerkleTree(6, base).root == MerkleTree(6, list(reversed(base))).root
    changed = [*base[:-1], Entry(b"k499", Timestamp(11, 0, "a"), False)]
    assert merkle.diff(MerkleTree(6, base), MerkleTree(6, changed)) == [merkle.leaf_of(b"k499", 6)]
    tombstoned = [*base[:-1], Entry(b"k499", ts, True)]
    assert merkle.diff(MerkleTree(6, base), MerkleTree(6, tombstoned)) == [
        merkle.leaf_of(b"k499", 6)
    ]


def test_empty_trees_compare_equal_at_the_root() -> None:
    assert MerkleTree(10).root == merkle.EMPTY
    assert merkle.diff(MerkleTree(10), MerkleTree(10)) == []


@settings(max_examples=100, deadline=None)
@given(
    nodes=st.lists(st.sampled_from("abcdefg"), min_size=2, max_size=7, unique=True),
    n=st.integers(1, 4),
    key_list=st.lists(keys, max_size=40, unique=True),
)
def test_split_by_peer_keeps_exactly_the_shared_keys(
    nodes: list[str], n: int, key_list: list[bytes]
) -> None:
    ring = Ring(nodes, 4)
    me = nodes[0]
    ts = Timestamp(1, 0, me)
    peers = merkle.sharing_peers(ring, me, n)
    split = merkle.split_by_peer(ring, me, n, peers, [Entry(k, ts, False) for k in key_list])
    for peer in nodes[1:]:
        expected = [k for k in key_list if merkle.shared(ring, k, n, me, peer)]
        got = [e.key for e in split.get(peer, [])]
        assert got == expected
        if expected:
            assert peer in peers


def test_tombstones_past_the_cutoff_are_hidden() -> None:
    live = merkle.is_live(100)
    assert live(Entry(b"k", Timestamp(99, 0, "a"), False))
    assert not live(Entry(b"k", Timestamp(99, 0, "a"), True))
    assert live(Entry(b"k", Timestamp(100, 0, "a"), True))


def test_depth_for_targets_small_leaves() -> None:
    assert merkle.depth_for(0) == 1
    assert merkle.depth_for(100_000) == 13
    assert 100_000 >> merkle.depth_for(100_000) <= 16
