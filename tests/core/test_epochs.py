"""Ring epochs by Paxos: the acceptor's rules one by one, then safety under a hostile
network (drops, duplicates, any order) with competing proposers, checked against the
one property that matters: every decision of an epoch names the same ring."""

from __future__ import annotations

import random

import pytest

from kvstore.core.epochs import (
    Accept,
    Accepted,
    AcceptorState,
    Ballot,
    Behind,
    Chosen,
    Learn,
    Nack,
    Prepare,
    Promise,
    Proposer,
    Request,
    RingRecord,
    accept,
)

FIVE = tuple((f"n{i}", f"127.0.0.1:{7000 + i}") for i in range(1, 6))
ONE = RingRecord(1, FIVE, 3, 16)
GROW = RingRecord(2, (*FIVE, ("n6", "127.0.0.1:7006")), 3, 16)
SHRINK = RingRecord(2, FIVE[1:], 3, 16)


def test_an_acceptor_promises_only_upwards_and_reports_what_it_accepted() -> None:
    state = AcceptorState(ONE)
    state, reply = accept(state, Prepare(2, Ballot(1, "a")))
    assert reply == Promise(2, Ballot(1, "a"), None)
    state, reply = accept(state, Prepare(2, Ballot(1, "a")))
    assert isinstance(reply, Nack)  # not above the promise
    state, reply = accept(state, Accept(2, Ballot(1, "a"), GROW))
    assert reply == Accepted(2, Ballot(1, "a"))
    state, reply = accept(state, Prepare(2, Ballot(2, "b")))
    assert reply == Promise(2, Ballot(2, "b"), (Ballot(1, "a"), GROW))
    _, reply = accept(state, Accept(2, Ballot(1, "a"), GROW))
    assert reply == Nack(2, Ballot(2, "b"))  # below the promise


def test_an_acceptor_answers_only_for_the_next_epoch() -> None:
    state = AcceptorState(ONE)
    assert accept(state, Prepare(1, Ballot(5, "a")))[1] == Chosen(ONE)
    assert accept(state, Prepare(3, Ballot(5, "a")))[1] == Behind(1)
    learned, _ = accept(state, Learn(GROW))
    assert learned == AcceptorState(GROW)  # votes reset for the epoch after
    assert accept(learned, Learn(ONE))[0] == learned  # never back to an older epoch


def test_rings_are_validated() -> None:
    with pytest.raises(ValueError, match="named twice"):
        RingRecord(2, (FIVE[0], FIVE[0], *FIVE[1:]), 3, 16)
    with pytest.raises(ValueError, match="N=3 needs"):
        RingRecord(2, FIVE[:2], 3, 16)
    with pytest.raises(ValueError, match="not 3"):
        Proposer("op", ONE, RingRecord(3, FIVE, 3, 16))


def test_a_proposer_that_finds_a_ring_accepted_carries_it_forward() -> None:
    # operator A got GROW accepted by a majority, then died before it knew
    acceptors = {n: AcceptorState(ONE) for n in ONE.ids}
    for node in ("n1", "n2", "n3"):
        acceptors[node], _ = accept(acceptors[node], Prepare(2, Ballot(1, "a")))
        acceptors[node], _ = accept(acceptors[node], Accept(2, Ballot(1, "a"), GROW))
    b = Proposer("b", ONE, SHRINK)
    outbox = b.start()
    while outbox and b.outcome is None:
        voter, message = outbox.pop(0)
        acceptors[voter], reply = accept(acceptors[voter], message)
        outbox += b.on_reply(voter, reply)
    assert b.outcome is not None and b.outcome.ring == GROW and not b.outcome.ours


def _run(seed: int) -> tuple[set[RingRecord], dict[str, AcceptorState]]:
    """Two proposers, five acceptors, a network that drops, duplicates and reorders."""
    rng = random.Random(seed)
    acceptors = {n: AcceptorState(ONE) for n in ONE.ids}
    proposers = [Proposer("a", ONE, GROW), Proposer("b", ONE, SHRINK)]
    # in flight: (to, message, from proposer index or None for a reply to it)
    wire: list[tuple[str, Request | object, int, bool]] = []
    for k, p in enumerate(proposers):
        wire += [(voter, m, k, True) for voter, m in p.start()]
    decisions: set[RingRecord] = set()
    for _ in range(4000):
        if rng.random() < 0.02:  # a proposer times out and starts a new round
            k = rng.randrange(2)
            if proposers[k].outcome is None:
                wire += [(v, m, k, True) for v, m in proposers[k].start()]
        if not wire:
            break
        to, message, k, request = wire.pop(rng.randrange(len(wire)))
        if rng.random() < 0.1:
            continue  # lost
        if rng.random() < 0.1:
            wire.append((to, message, k, request))  # duplicated: delivered again later
        if request:
            acceptors[to], reply = accept(acceptors[to], message)  # type: ignore[arg-type]
            wire.append((to, reply, k, False))
        else:
            more = proposers[k].on_reply(to, message)  # type: ignore[arg-type]
            wire += [(v, m, k, True) for v, m in more if v in acceptors]
        for p in proposers:
            if p.outcome is not None:
                decisions.add(p.outcome.ring)
    for state in acceptors.values():
        if state.chosen.epoch == 2:
            decisions.add(state.chosen)
    return decisions, acceptors


@pytest.mark.parametrize("block", range(4))
def test_every_decision_of_an_epoch_names_one_ring_whatever_the_network_does(block: int) -> None:
    decided_runs = 0
    for seed in range(block * 100, block * 100 + 100):
        decisions, _ = _run(seed)
        assert len(decisions) <= 1, f"seed {seed}: {decisions}"
        assert decisions <= {GROW, SHRINK}
        decided_runs += bool(decisions)
    assert decided_runs >= 50  # and the network lets most runs decide


def test_safety_fails_when_a_proposer_ignores_what_was_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the check above can fail: a proposer that always proposes its own ring forks it
    original = Proposer.on_reply

    def stubborn(self: Proposer, voter: str, reply: object) -> list[tuple[str, Request]]:
        if isinstance(reply, Promise):
            reply = reply._replace(accepted=None)
        return original(self, voter, reply)  # type: ignore[arg-type]

    monkeypatch.setattr(Proposer, "on_reply", stubborn)
    assert any(len(_run(seed)[0]) > 1 for seed in range(400))


def test_each_phase_says_where_reads_and_writes_go() -> None:
    from kvstore.core.epochs import CLEAN_UP, READ_NEW, STABLE, WRITE_BOTH

    old, new = ONE.ids, GROW.ids
    expected = {
        STABLE: (old, (old,)),
        WRITE_BOTH: (old, (old, new)),
        READ_NEW: (new, (old, new)),
        CLEAN_UP: (new, (new,)),  # the old ring gets nothing more: its copies can go
    }
    for phase, (reads, writes) in expected.items():
        target = None if phase == STABLE else GROW.members
        record = RingRecord(3, FIVE, 3, 16, target, phase)
        assert (record.read_ids(), record.write_rings()) == (reads, writes), phase
