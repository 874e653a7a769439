"""Ring and annotated preference lists, against a deliberately slow obvious model."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from kvstore.core.ring import Ring, token

node_sets = st.lists(
    st.text("abcdefgh123", min_size=1, max_size=4), min_size=1, max_size=8, unique=True
)


def naive_walk(nodes: list[str], vnodes: int, key: bytes) -> list[str]:
    points = sorted((token(f"{n}#{i}".encode()), n) for n in nodes for i in range(vnodes))
    t = token(key)
    start = next((i for i, (pt, _) in enumerate(points) if pt > t), 0)
    order: list[str] = []
    for j in range(len(points)):
        node = points[(start + j) % len(points)][1]
        if node not in order:
            order.append(node)
    return order


@settings(max_examples=200, deadline=None)
@given(nodes=node_sets, vnodes=st.integers(1, 8), key=st.binary(min_size=1, max_size=16))
def test_walk_matches_naive_model(nodes: list[str], vnodes: int, key: bytes) -> None:
    assert list(Ring(nodes, vnodes).walk(key)) == naive_walk(nodes, vnodes, key)


@settings(max_examples=300, deadline=None)
@given(
    nodes=node_sets,
    vnodes=st.integers(1, 8),
    key=st.binary(min_size=1, max_size=16),
    n=st.integers(1, 8),
    down_mask=st.integers(0, 255),
)
def test_preference_list_annotations(
    nodes: list[str], vnodes: int, key: bytes, n: int, down_mask: int
) -> None:
    n = min(n, len(nodes))
    down = {node for i, node in enumerate(nodes) if down_mask >> i & 1}
    ring = Ring(nodes, vnodes)
    walk = naive_walk(nodes, vnodes, key)
    prefs = ring.preference_list(key, n, down)
    primaries = walk[:n]
    # healthy primaries are there, in walk order, marked primary
    assert [r.node for r in prefs if r.primary] == [p for p in primaries if p not in down]
    fallbacks = [r for r in prefs if not r.primary]
    # each fallback stands in for a distinct down primary, in order
    assert [r.hint_for for r in fallbacks] == [p for p in primaries if p in down][: len(fallbacks)]
    spare = [x for x in walk[n:] if x not in down]
    assert [r.node for r in fallbacks] == spare[: len(fallbacks)]
    # as many fallbacks as possible, never a down node, never a duplicate
    assert len(fallbacks) == min(len(spare), sum(1 for p in primaries if p in down))
    assert all(r.node not in down for r in prefs)
    assert len({r.node for r in prefs}) == len(prefs)


def test_vnodes_spread_keys_over_every_node() -> None:
    ring = Ring(["n1", "n2", "n3", "n4", "n5"], 64)
    counts = {n: 0 for n in ring.nodes}
    for i in range(5000):
        counts[ring.primaries(f"key{i}".encode(), 1)[0]] += 1
    assert min(counts.values()) > 5000 / 5 * 0.6, counts
