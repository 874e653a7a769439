"""The membership planner against the obvious model: two rings asked key by key."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from kvstore.core.rebalance import SPACE, PlanRefused, RingSpec, plan
from kvstore.core.ring import Ring, token

FIVE = tuple(f"n{i}" for i in range(1, 6))


def spec(*members: str, n: int = 3, vnodes: int = 8) -> RingSpec:
    return RingSpec(tuple(members), n, vnodes)


def test_adding_a_node_moves_only_what_it_comes_to_own() -> None:
    p = plan(spec(*FIVE), spec(*FIVE, "n6"))
    assert p.added == ("n6",) and p.removed == ()
    moving = p.moving
    assert moving and all("n6" in r.after and "n6" not in r.before for r in moving)
    assert all(s.target == "n6" for r in moving for s in r.streams)
    # with six equal members, n6 ends up replicating about N/6 of the keys
    share_after = p.ownership()["n6"][1]
    assert 0.2 < share_after < 0.8
    assert sum(r.share for r in moving) == pytest.approx(share_after)


def test_removing_a_live_node_streams_its_ranges_to_the_new_owners() -> None:
    p = plan(spec(*FIVE), spec("n1", "n3", "n4", "n5"))
    assert p.removed == ("n2",)
    for r in p.moving:
        assert "n2" in r.before and "n2" not in r.after and r.dropped == ("n2",)
    # the new replica takes n2's place with n2's own copy
    assert all(s.source == "n2" for r in p.moving for s in r.streams)


def test_a_dead_node_is_never_a_source_and_every_survivor_is() -> None:
    p = plan(spec(*FIVE), spec("n1", "n2", "n4", "n5", "n6"), dead=["n3"])
    assert p.moving
    assert all(s.source != "n3" for r in p.moving for s in r.streams)
    for r in p.moving:
        if r.dropped == ("n3",):  # the node taking n3's place merges both survivors' copies
            (gained,) = set(r.after) - set(r.before)
            assert {s.source for s in r.streams if s.target == gained} == set(r.before) - {"n3"}


def test_ranges_that_lost_every_replica_are_refused_not_planned() -> None:
    with pytest.raises(PlanRefused, match="no live replica"):
        plan(spec("n1", "n2", "n3", n=3), spec("n4", "n5", "n6", n=3), dead=["n1", "n2", "n3"])


@pytest.mark.parametrize(
    ("after", "dead", "reason"),
    [
        (spec("n1", "n2"), (), "fewer than N=3"),
        (spec(*FIVE, n=2), (), "N changes from 3 to 2"),
        (spec(*FIVE, vnodes=16), (), "vnodes changes from 8 to 16"),
        (spec(*FIVE), ("n9",), "n9: not a member"),
        (spec(*FIVE), ("n3",), "n3: still in the desired membership"),
        (spec("n1", "n1", "n2", "n3"), (), "names a node twice"),
    ],
)
def test_refusals_name_the_problem(after: RingSpec, dead: tuple[str, ...], reason: str) -> None:
    with pytest.raises(PlanRefused, match=reason):
        plan(spec(*FIVE), after, dead)


def test_the_same_membership_plans_nothing() -> None:
    p = plan(spec(*FIVE), spec(*FIVE))
    assert p.empty and p.streams() == {}


members = st.lists(
    st.sampled_from([f"n{i}" for i in range(1, 10)]), min_size=3, max_size=7, unique=True
)


@settings(max_examples=60, deadline=None)
@given(members, members, st.lists(st.binary(max_size=12), min_size=1, max_size=40))
def test_every_key_s_range_names_both_rings_replicas(
    old: list[str], new: list[str], keys: list[bytes]
) -> None:
    p = plan(spec(*old), spec(*new))
    # the ranges cover token space once, in order
    assert p.ranges[0].start == 0 and p.ranges[-1].end == SPACE
    assert all(a.end == b.start for a, b in itertools.pairwise(p.ranges))
    before, after = Ring(old, 8), Ring(new, 8)
    starts = [r.start for r in p.ranges]
    for key in keys:
        t = token(key)
        r = p.ranges[max(i for i, s in enumerate(starts) if s <= t)]
        assert r.before == before.primaries(key, 3)
        assert r.after == after.primaries(key, 3)
        # every node that gains the key gets it streamed from one that has it
        gained = set(r.after) - set(r.before)
        assert {s.target for s in r.streams} == gained
        assert all(s.source in r.before for s in r.streams)


@settings(max_examples=200, deadline=None)
@given(
    members,
    members,
    st.data(),
)
def test_streaming_keeps_every_key_on_as_many_live_replicas(
    old: list[str], new: list[str], data: st.DataObject
) -> None:
    """The obvious model of a range move: a write reached some subset H of the old
    replicas (any subset: a replica may have missed it); after the streams, the new
    replicas that hold it are those of H that stay plus every target one of whose sources
    is in H. None of H's live copies may be lost: a quorum write stays a quorum write."""
    removed = [m for m in old if m not in new]
    dead = data.draw(st.lists(st.sampled_from(removed), unique=True) if removed else st.just([]))
    try:
        p = plan(spec(*old), spec(*new), dead)
    except PlanRefused:
        return  # a range lost every replica: refused, checked above
    for r in p.moving:
        held = data.draw(st.sets(st.sampled_from(r.before), min_size=1))
        live = held - set(dead)
        after = {node for node in held if node in r.after} | {
            s.target for s in r.streams if s.source in held
        }
        assert len(after) >= len(live), (r, held, after)
