"""Coordinator rounds: planning, strict vs sloppy counting, definite vs indefinite; and the
replica choices of a targeted read, a read repair and an ABD write-back, against models."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import given

from kvstore.core.coordinator import (
    MultiWriteRound,
    ReadRound,
    Reply,
    WriteBack,
    WriteRound,
    merge_targets,
    plan,
    read_repair_targets,
    targeted_split,
    write_back,
)
from kvstore.core.quorum import Outcome
from kvstore.core.resolve import resolve
from kvstore.core.ring import Replica, Ring
from kvstore.core.version import Record, Timestamp
from kvstore.errors import QuorumFailed, Unavailable

RING = Ring(["n1", "n2", "n3", "n4", "n5"], 16)
KEY = b"some-key"
PRIMARIES = RING.primaries(KEY, 3)


def test_plan_fails_definitely_before_sending() -> None:
    two_down = set(PRIMARIES[:2])
    with pytest.raises(Unavailable, match="strict quorum") as info:
        plan(RING, KEY, 3, 2, sloppy=False, down=two_down, what="put")
    assert info.value.definite
    # a sloppy call can use fallbacks instead
    targets = plan(RING, KEY, 3, 2, sloppy=True, down=two_down, what="put")
    assert sum(not t.primary for t in targets) == 2


def test_strict_round_ignores_fallback_acks() -> None:
    targets = [Replica("n1", True), Replica("n4", False, "n2"), Replica("n5", False, "n3")]
    round_ = WriteRound(targets, 2, sloppy=False)
    assert round_.reply(targets[1], Reply.ACK) is Outcome.FAILED  # only 1 primary counted
    assert isinstance(round_.error(), QuorumFailed)


@pytest.mark.parametrize("replies", list(itertools.product(list(Reply), repeat=3)))
def test_write_round_error_class(replies: tuple[Reply, Reply, Reply]) -> None:
    targets = [Replica(n, True) for n in PRIMARIES]
    round_ = WriteRound(targets, 3, sloppy=True)
    for target, reply in zip(targets, replies, strict=True):
        round_.reply(target, reply)
    if all(r is Reply.ACK for r in replies):
        assert round_.tally.outcome is Outcome.REACHED
        return
    assert round_.tally.outcome is Outcome.FAILED
    error = round_.error()
    nothing_landed = all(r is Reply.NOT_SENT for r in replies)
    assert error.definite == nothing_landed
    assert isinstance(error, Unavailable if nothing_landed else QuorumFailed)
    assert not round_.timeout_error(10).definite


def test_read_round_resolves_after_r_replies() -> None:
    targets = [Replica(n, True) for n in PRIMARIES]
    round_ = ReadRound(targets, 2, sloppy=False)
    old = Record(KEY, b"old", Timestamp(1, 0, "n1"))
    new = Record(KEY, b"new", Timestamp(2, 0, "n2"))
    assert round_.reply(targets[0], old) is Outcome.PENDING
    assert round_.reply(targets[1], new) is Outcome.REACHED
    resolution = round_.resolution()
    assert resolution.winner == new and resolution.stale == (targets[0].node,)
    failed = ReadRound(targets, 3, sloppy=False)
    failed.fail(targets[0], "down")
    assert failed.tally.outcome is Outcome.FAILED and failed.error().definite


def test_early_failure_with_requests_in_flight_is_indefinite() -> None:
    """Found by the harness: W=all, one replica unreachable, the round fails at once, but
    the other two requests were already sent and later applied; calling that failure
    definite made the checker see a write that "did not happen" being read."""
    targets = [Replica(n, True) for n in PRIMARIES]
    round_ = WriteRound(targets, 3, sloppy=False)
    assert round_.reply(targets[0], Reply.NOT_SENT) is Outcome.FAILED
    error = round_.error()
    assert isinstance(error, QuorumFailed) and not error.definite
    # a hint to a fallback is a write too: it keeps the failure indefinite
    with_fallback = [Replica("n1", True), Replica("n5", False, "n2")]
    round_ = WriteRound(with_fallback, 2, sloppy=False)
    round_.reply(with_fallback[0], Reply.NOT_SENT)
    assert not round_.error().definite
    round_.reply(with_fallback[1], Reply.NOT_SENT)
    assert round_.error().definite


NODES = ["n1", "n2", "n3", "n4", "n5", "n6"]


@st.composite
def preference_lists(draw: st.DrawFn) -> list[Replica]:
    """Distinct nodes, each a primary or a fallback standing in for some owner."""
    nodes = draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=5, unique=True))
    kinds = draw(st.lists(st.booleans(), min_size=len(nodes), max_size=len(nodes)))
    return [Replica(n, p, None if p else "n9") for n, p in zip(nodes, kinds, strict=True)]


versions = st.one_of(
    st.none(), st.builds(lambda w: Record(KEY, b"v%d" % w, Timestamp(w, 0, "w")), st.integers(0, 3))
)


@st.composite
def answered(draw: st.DrawFn) -> tuple[list[Replica], dict[str, Record | None]]:
    """A preference list and the versions some of its replicas answered."""
    targets = draw(preference_lists())
    who = draw(st.lists(st.sampled_from([t.node for t in targets]), unique=True))
    return targets, {n: draw(versions) for n in who}


@given(preference_lists(), st.sampled_from([*NODES, "elsewhere"]), st.integers(1, 5), st.booleans())
def test_targeted_split_matches_obvious_model(
    targets: list[Replica], local: str, r: int, sloppy: bool
) -> None:
    # primaries, then (sloppy only) fallbacks; in each, the local one, then list order
    order: list[Replica] = []
    for primaries in (True, False) if sloppy else (True,):
        group = [t for t in targets if t.primary is primaries]
        order += [t for t in group if t.node == local] + [t for t in group if t.node != local]
    first, spares = targeted_split(targets, local, r, sloppy)
    assert (first, spares) == (order[:r], order[r:])


@given(answered())
def test_read_repair_writes_exactly_the_stale_primaries(
    case: tuple[list[Replica], dict[str, Record | None]],
) -> None:
    targets, replies = case
    repaired = read_repair_targets(targets, resolve(replies))
    present = [r.ts for r in replies.values() if r is not None]
    if not present:
        assert repaired == []  # nothing to repair with
        return
    newest = max(present)
    behind = {n for n, r in replies.items() if r is None or r.ts < newest}
    assert repaired == [t for t in targets if t.primary and t.node in behind]


@given(answered(), st.integers(1, 5))
def test_write_back_reaches_a_quorum_and_asks_only_who_lacks_the_winner(
    case: tuple[list[Replica], dict[str, Record | None]], quorum: int
) -> None:
    targets, replies = case
    winner = resolve(replies).winner
    if winner is None:
        return  # an ABD read with no winner writes nothing back
    todo = write_back(targets, replies, winner, quorum)
    holders = {n for n, r in replies.items() if r == winner}
    asked = {t.node for t in todo.ask}
    if len(holders) >= quorum:
        assert todo == WriteBack(0, [])
        return
    assert todo.needed == quorum - len(holders)
    assert asked == {t.node for t in targets if t.primary} - holders
    # any ``needed`` of those acknowledging makes a quorum hold the winner
    primaries = sum(t.primary for t in targets)
    if primaries >= quorum:
        assert len(todo.ask) >= todo.needed


# ----------------------------------------------------------- writes during a change

_OLD = [Replica(n, True) for n in ("n1", "n2", "n3")]
_NEW = [Replica(n, True) for n in ("n2", "n3", "n6")]


def test_a_write_during_a_change_needs_w_in_both_rings() -> None:
    round_ = MultiWriteRound([_OLD, _NEW], 2, False)
    assert round_.targets == [*_OLD, _NEW[2]]  # n2 and n3 get one message each
    assert round_.reply(Replica("n1", True), Reply.ACK) is Outcome.PENDING
    assert round_.reply(Replica("n2", True), Reply.ACK) is Outcome.PENDING  # old: 2, new: 1
    assert round_.reply(Replica("n6", True), Reply.ACK) is Outcome.REACHED


def test_a_write_fails_as_soon_as_one_ring_cannot_reach_w_and_stays_failed() -> None:
    round_ = MultiWriteRound([_OLD, _NEW], 2, False)
    round_.reply(Replica("n6", True), Reply.NOT_SENT)
    assert round_.reply(Replica("n3", True), Reply.FAILED) is Outcome.FAILED  # new: 1 left
    assert round_.reply(Replica("n2", True), Reply.ACK) is Outcome.FAILED  # never flips
    error = round_.error()
    assert not error.definite and "new ring" in str(error)


@given(
    st.lists(
        st.tuples(st.sampled_from(["n1", "n2", "n3", "n6"]), st.sampled_from(list(Reply))),
        max_size=8,
        unique_by=lambda x: x[0],
    ),
    st.integers(1, 3),
)
def test_the_outcome_is_the_obvious_model_s(replies: list[tuple[str, Reply]], w: int) -> None:
    round_ = MultiWriteRound([_OLD, _NEW], w, False)
    decided = Outcome.PENDING
    for node, reply in replies:
        outcome = round_.reply(Replica(node, True), reply)
        if decided is Outcome.PENDING:
            # the model: each ring on its own, then both must hold
            got = dict(replies[: replies.index((node, reply)) + 1])
            rings = [{t.node for t in _OLD}, {t.node for t in _NEW}]
            acks = [sum(got.get(n) is Reply.ACK for n in ring) for ring in rings]
            open_ = [sum(n not in got or got[n] is Reply.ACK for n in ring) for ring in rings]
            if any(o < w for o in open_):
                decided = Outcome.FAILED
            elif all(a >= w for a in acks):
                decided = Outcome.REACHED
        assert outcome is decided


def test_merge_keeps_the_first_appearance_order() -> None:
    assert [t.node for t in merge_targets([_OLD, _NEW])] == ["n1", "n2", "n3", "n6"]
