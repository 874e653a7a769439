"""Ring epochs: which membership the cluster uses, decided one epoch at a time by Paxos.

Why Paxos and not the store's own linearizable level on a system key: a membership
change must be decided exactly once even when two operators (or one that died and came
back) propose different rings for the same epoch. A linearizable register gives reads
and writes, not compare-and-set, so two operators could each write "epoch 7" and both
believe they won. Single-decree Paxos per epoch gives exactly one chosen ring, and a
proposer that finds a ring already accepted must carry that ring forward, so an apply
killed mid-way is finished, not forked, by the next one. The voters of epoch e + 1 are
the members of epoch e: a node that is not yet a member has no vote.

Pure (sans-I/O, like ``merkle.TopDown``): ``Acceptor`` turns a message into a reply and
a new state the caller must persist before sending the reply; ``Proposer`` says which
messages to send and is fed the replies. The runtime moves the messages.

Rules and invariants:
- A ballot is (round, proposer id), ordered as a tuple: no two proposers share one, so
  proposer ids must be unique (an operator's is random).
- An acceptor answers only for the epoch after the one it knows is chosen; older
  epochs get the chosen ring (``Chosen``), newer ones ``Behind`` (teach it first).
- Prepare(b): promise b if b is above every ballot promised, reporting what it
  accepted; Accept(b, ring): accept if b is not below the promise. Otherwise ``Nack``
  with the promise, so the proposer retries above it.
- A proposer holding promises from a majority proposes the ring accepted under the
  highest ballot among them, or its own when none; a majority of Accepted decides.
- Learning a chosen ring for a later epoch replaces the acceptor's state: it never goes
  back to an older epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple


class Ballot(NamedTuple):
    round: int
    proposer: str


ZERO = Ballot(0, "")


STABLE = "stable"  # one ring: reads and writes use ``members``
WRITE_BOTH = "write-both"  # writes reach W in both rings; reads use ``members``
READ_NEW = "read-new"  # writes reach W in both rings; reads use ``target``
# reads and writes use ``target`` only; nodes drop the copies ``target`` does not give them
CLEAN_UP = "clean-up"
PHASES = (STABLE, WRITE_BOTH, READ_NEW, CLEAN_UP)

Members = tuple[tuple[str, str], ...]


def _check_members(epoch: int, members: Members, n: int, what: str) -> None:
    ids = [m for m, _ in members]
    if len(set(ids)) != len(ids):
        raise ValueError(f"epoch {epoch}: a {what} member is named twice ({', '.join(ids)})")
    if not 1 <= n <= len(ids):
        raise ValueError(f"epoch {epoch}: N={n} needs 1..{len(ids)} {what} members")


@dataclass(frozen=True, slots=True)
class RingRecord:
    """One epoch's membership: members by (id, address), N and vnodes; while a change
    is under way, the ring it goes to (``target``) and how far it is (``phase``).
    The members vote on the next epoch, whatever the phase."""

    epoch: int
    members: Members
    n: int
    vnodes: int
    target: Members | None = None
    phase: str = STABLE

    def __post_init__(self) -> None:
        if self.epoch < 1:
            raise ValueError(f"epoch {self.epoch}: epochs start at 1")
        _check_members(self.epoch, self.members, self.n, "ring")
        if self.vnodes < 1:
            raise ValueError(f"epoch {self.epoch}: vnodes must be at least 1")
        if self.phase not in PHASES:
            raise ValueError(f"epoch {self.epoch}: phase {self.phase!r} is not one of {PHASES}")
        if (self.target is None) != (self.phase == STABLE):
            raise ValueError(f"epoch {self.epoch}: a target ring exactly while a change is on")
        if self.target is not None:
            _check_members(self.epoch, self.target, self.n, "target")
            addresses = dict(self.members)
            for m, a in self.target:
                if m in addresses and addresses[m] != a:
                    raise ValueError(f"epoch {self.epoch}: {m} has two addresses")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.members)

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.target or ())

    def everyone(self) -> Members:
        """Members and target members, each once: every node that takes part."""
        return tuple(dict((*self.members, *(self.target or ()))).items())

    def read_ids(self) -> tuple[str, ...]:
        return self.target_ids if self.phase in (READ_NEW, CLEAN_UP) else self.ids

    def write_rings(self) -> tuple[tuple[str, ...], ...]:
        """The rings a write must reach W in: one, or both while ranges move."""
        if self.target is None:
            return (self.ids,)
        return (self.target_ids,) if self.phase == CLEAN_UP else (self.ids, self.target_ids)

    def majority(self) -> int:
        return len(self.members) // 2 + 1


# ---------------------------------------------------------------------------- messages


class Prepare(NamedTuple):
    epoch: int
    ballot: Ballot


class Accept(NamedTuple):
    epoch: int
    ballot: Ballot
    ring: RingRecord


class Learn(NamedTuple):
    ring: RingRecord


class Promise(NamedTuple):
    epoch: int
    ballot: Ballot
    accepted: tuple[Ballot, RingRecord] | None


class Accepted(NamedTuple):
    epoch: int
    ballot: Ballot


class Nack(NamedTuple):
    epoch: int
    promised: Ballot


class Chosen(NamedTuple):
    """The epoch asked about is decided already: here is the ring chosen last."""

    ring: RingRecord


class Behind(NamedTuple):
    """The acceptor does not know the epoch before the one asked about."""

    known: int


class Learned(NamedTuple):
    epoch: int


Request = Prepare | Accept | Learn
Reply = Promise | Accepted | Nack | Chosen | Behind | Learned


# ---------------------------------------------------------------------------- acceptor


@dataclass(frozen=True, slots=True)
class AcceptorState:
    """What a node must keep on disk: the ring chosen last, and its vote on the next."""

    chosen: RingRecord
    promised: Ballot = ZERO
    accepted: tuple[Ballot, RingRecord] | None = None


def accept(state: AcceptorState, message: Request) -> tuple[AcceptorState, Reply]:
    """The acceptor's answer to one message, and its state afterwards (persist it first)."""
    if isinstance(message, Learn):
        ring = message.ring
        if ring.epoch > state.chosen.epoch:
            return AcceptorState(ring), Learned(ring.epoch)
        return state, Learned(state.chosen.epoch)
    epoch = message.epoch
    if epoch <= state.chosen.epoch:
        return state, Chosen(state.chosen)
    if epoch > state.chosen.epoch + 1:
        return state, Behind(state.chosen.epoch)
    if isinstance(message, Prepare):
        if message.ballot > state.promised:
            state = replace(state, promised=message.ballot)
            return state, Promise(epoch, message.ballot, state.accepted)
        return state, Nack(epoch, state.promised)
    if message.ring.epoch != epoch:
        raise ValueError(
            f"an Accept for epoch {epoch} carries a ring of epoch {message.ring.epoch}"
        )
    if message.ballot >= state.promised:
        state = replace(state, promised=message.ballot, accepted=(message.ballot, message.ring))
        return state, Accepted(epoch, message.ballot)
    return state, Nack(epoch, state.promised)


# ---------------------------------------------------------------------------- proposer


class Decided(NamedTuple):
    ring: RingRecord
    ours: bool  # the ring chosen is the one this proposer wanted


@dataclass(slots=True)
class Proposer:
    """Drives one epoch's decision. ``start`` and ``on_reply`` return the messages to send
    as (voter, request) pairs; ``outcome`` is set once the epoch is decided (by anyone)."""

    me: str
    current: RingRecord  # the ring of the epoch before: its members vote
    wanted: RingRecord
    round: int = 1
    outcome: Decided | None = None
    _ballot: Ballot = ZERO
    _phase: int = 0
    _promises: dict[str, tuple[Ballot, RingRecord] | None] = field(default_factory=dict)
    _accepted: set[str] = field(default_factory=set)
    _value: RingRecord | None = None

    def __post_init__(self) -> None:
        if self.wanted.epoch != self.current.epoch + 1:
            raise ValueError(
                f"epoch {self.current.epoch} is followed by {self.current.epoch + 1}, "
                f"not {self.wanted.epoch}"
            )

    @property
    def epoch(self) -> int:
        return self.wanted.epoch

    def start(self) -> list[tuple[str, Request]]:
        """Phase 1 with a fresh ballot (each call a higher one: call it again when the
        replies stopped coming)."""
        self._ballot = Ballot(self.round, self.me)
        self.round += 1
        self._phase, self._promises, self._accepted, self._value = 1, {}, set(), None
        return [(voter, Prepare(self.epoch, self._ballot)) for voter in self.current.ids]

    def on_reply(self, voter: str, reply: Reply) -> list[tuple[str, Request]]:
        if self.outcome is not None or voter not in self.current.ids:
            return []
        if isinstance(reply, Chosen):
            return self._decided(reply.ring) if reply.ring.epoch >= self.epoch else []
        if isinstance(reply, Behind):
            return [(voter, Learn(self.current))]  # teach it epoch e; it votes next time
        if isinstance(reply, Nack):
            if reply.epoch == self.epoch and reply.promised > self._ballot:
                self.round = max(self.round, reply.promised.round + 1)
                return self.start()
            return []
        if isinstance(reply, Promise):
            if self._phase != 1 or reply.ballot != self._ballot:
                return []
            self._promises[voter] = reply.accepted
            if len(self._promises) < self.current.majority():
                return []
            votes = [a for a in self._promises.values() if a is not None]
            self._value = max(votes, key=lambda a: a[0])[1] if votes else self.wanted
            self._phase = 2
            return [(v, Accept(self.epoch, self._ballot, self._value)) for v in self.current.ids]
        if isinstance(reply, Accepted):
            if self._phase != 2 or reply.ballot != self._ballot:
                return []
            self._accepted.add(voter)
            if len(self._accepted) >= self.current.majority():
                assert self._value is not None
                return self._decided(self._value)
        return []

    def _decided(self, ring: RingRecord) -> list[tuple[str, Request]]:
        if ring.epoch > self.epoch:
            # a later epoch is chosen already: this one was decided too, by others
            self.outcome = Decided(ring, False)
            return []
        self.outcome = Decided(ring, ring == self.wanted)
        # the new ring's members too: they vote on the epoch after it
        learners = dict.fromkeys((*self.current.ids, *(m for m, _ in ring.everyone())))
        return [(node, Learn(ring)) for node in learners]
