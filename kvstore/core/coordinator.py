"""Coordinator request logic, pure: which replicas to ask, when a round is decided, and
which error a failed round is.

Rules:
- A write goes to every replica of the annotated preference list; a read asks the same
  replicas, or, targeted, R of them first (``targeted_split``, in ``contact_order``: its
  own replica first) and the others only when needed. Only primaries count toward R/W
  for a strict call; a sloppy call counts fallbacks too. Replicas known to be down are
  never asked (no waiting on timeouts).
- If fewer replicas that could count are known live than the call needs, the call fails
  *before sending* with ``Unavailable`` (definite).
- A failed write round is definite (``Unavailable``) only when no replica can have
  applied it: every target (fallbacks included: a hint is a write too) has answered
  "not sent". A round can fail early, while requests to other replicas are still in
  flight; those may still land, so such a failure is ``QuorumFailed`` (indefinite).
- Read repair writes the winner only to primaries that answered with an older version
  (``read_repair_targets``); a fallback's copy is a hint, handed back to its owner.
- An ABD read's write-back (``write_back``) makes the winner held by a quorum: it asks
  the primaries not known to hold it for as many acknowledgements as the quorum lacks.
- While the membership changes, a write must reach W in the old ring and in the new one
  (``MultiWriteRound``): one message per distinct replica, each acknowledgement counted
  in every ring it belongs to; the write fails as soon as one ring cannot reach W.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass

from kvstore.core.quorum import Outcome, Tally
from kvstore.core.resolve import Resolution, resolve
from kvstore.core.ring import Replica, Ring
from kvstore.core.version import Record
from kvstore.errors import KVError, QuorumFailed, RequestTimeout, Unavailable


class Reply(enum.Enum):
    ACK = "ack"
    NOT_SENT = "not_sent"  # certainly never reached the replica
    FAILED = "failed"  # sent; the replica may or may not have applied it


def countable(targets: list[Replica], sloppy: bool) -> int:
    """How many of ``targets`` may count toward R/W: all if sloppy, else the primaries."""
    return sum(1 for t in targets if sloppy or t.primary)


def plan(
    ring: Ring,
    key: bytes,
    n: int,
    needed: int,
    sloppy: bool,
    down: Container[str],
    what: str,
) -> list[Replica]:
    """The replicas to contact, or ``Unavailable`` when too few could count."""
    targets = ring.preference_list(key, n, down)
    usable = countable(targets, sloppy)
    if usable < needed:
        kind = "sloppy" if sloppy else "strict"
        raise Unavailable(
            f"{what} needs {needed} replicas ({kind} quorum) but only {usable} of the key's "
            f"replicas are known to be up"
        )
    return targets


def contact_order(targets: list[Replica], local: str, sloppy: bool) -> list[Replica]:
    """The targets that may count, in the order a targeted read asks them: primaries
    before fallbacks (a fallback holds only what it took while the owner was away), the
    coordinator's own one first within each (no network), else in preference-list order.
    Targets that cannot count are left out."""
    usable = [t for t in targets if sloppy or t.primary]
    return sorted(usable, key=lambda t: (not t.primary, t.node != local))


def targeted_split(
    targets: list[Replica], local: str, r: int, sloppy: bool
) -> tuple[list[Replica], list[Replica]]:
    """A targeted read's first ``r`` replicas to ask, and its spares (asked only if one of
    the first fails or is slow), both in ``contact_order``."""
    order = contact_order(targets, local, sloppy)
    return order[:r], order[r:]


def read_repair_targets(targets: list[Replica], resolution: Resolution) -> list[Replica]:
    """The replicas a read repair writes the winner to: the primaries that answered with
    an older version or none. Fallbacks are left out: writing to one only adds a hint."""
    if resolution.winner is None:
        return []
    return [t for t in targets if t.primary and t.node in resolution.stale]


@dataclass(frozen=True, slots=True)
class WriteBack:
    """What an ABD read must still do before it answers."""

    needed: int  # acknowledgements of the winner the quorum still lacks (0: none)
    ask: list[Replica]  # the primaries not known to hold the winner


def write_back(
    targets: list[Replica], replies: Mapping[str, Record | None], winner: Record, quorum: int
) -> WriteBack:
    """The write-back of an ABD read whose round saw ``replies`` and chose ``winner``.

    A replica that answered the winner's timestamp already holds it; the primaries that
    did not are asked, and ``needed`` of them must acknowledge. With at least ``quorum``
    primaries among ``targets`` (``plan`` ensures it for a strict read), there are
    always that many to ask."""
    holders = {n for n, r in replies.items() if r is not None and r.ts >= winner.ts}
    missing = quorum - len(holders)
    if missing <= 0:
        return WriteBack(0, [])
    return WriteBack(missing, [t for t in targets if t.primary and t.node not in holders])


class WriteRound:
    """Acks from the replicas of one write, tallied toward W."""

    __slots__ = ("acked", "failed", "sloppy", "tally", "targets")

    def __init__(self, targets: list[Replica], w: int, sloppy: bool) -> None:
        self.targets = targets
        self.sloppy = sloppy
        counted = countable(targets, sloppy)
        self.tally = Tally(w, counted)
        self.acked: list[Replica] = []
        self.failed: dict[str, Reply] = {}

    def reply(self, target: Replica, reply: Reply) -> Outcome:
        counts = self.sloppy or target.primary
        if reply is Reply.ACK:
            self.acked.append(target)
            return self.tally.ack() if counts else self.tally.outcome
        self.failed[target.node] = reply
        return self.tally.fail() if counts else self.tally.outcome

    @property
    def maybe_applied(self) -> bool:
        """Whether any replica may have applied (or may still apply) the write."""
        return len(self.failed) < len(self.targets) or any(
            reply is not Reply.NOT_SENT for reply in self.failed.values()
        )

    def error(self) -> KVError:
        got, needed = self.tally.acks, self.tally.needed
        failed = ", ".join(f"{node} ({reply.value})" for node, reply in self.failed.items())
        if not self.maybe_applied:  # definite only when nothing can land anywhere
            return Unavailable(
                f"write reached no replica ({needed} needed): could not contact {failed}"
            )
        return QuorumFailed(
            f"only {got} of {needed} required replicas acknowledged (failed: {failed}); "
            f"the write may still be on some replicas"
        )

    def timeout_error(self, timeout_ms: int) -> KVError:
        return RequestTimeout(
            f"write timed out after {timeout_ms} ms with {self.tally.acks} of "
            f"{self.tally.needed} acknowledgements; it may or may not have been applied"
        )


class ReadRound:
    """Versions from the replicas of one read; decided once R have answered."""

    __slots__ = ("errors", "replies", "sloppy", "tally", "targets")

    def __init__(self, targets: list[Replica], r: int, sloppy: bool) -> None:
        self.targets = targets
        self.sloppy = sloppy
        counted = countable(targets, sloppy)
        self.tally = Tally(r, counted)
        self.replies: dict[str, Record | None] = {}
        self.errors: dict[str, str] = {}

    def reply(self, target: Replica, record: Record | None) -> Outcome:
        if not (self.sloppy or target.primary):
            return self.tally.outcome  # a strict read ignores fallbacks' answers
        self.replies[target.node] = record
        return self.tally.ack()

    def fail(self, target: Replica, why: str) -> Outcome:
        self.errors[target.node] = why
        if not (self.sloppy or target.primary):
            return self.tally.outcome
        return self.tally.fail()

    def resolution(self) -> Resolution:
        return resolve(self.replies)

    def error(self) -> KVError:
        # A read has no effect, so a failed read is always definite.
        failed = "; ".join(f"{node}: {why}" for node, why in self.errors.items())
        return QuorumFailed(
            f"the read needs {self.tally.needed} replicas but at most "
            f"{self.tally.total - self.tally.failures} could answer (failed: {failed})",
            definite=True,
        )

    def timeout_error(self, timeout_ms: int) -> KVError:
        return RequestTimeout(
            f"read timed out after {timeout_ms} ms with {self.tally.acks} of "
            f"{self.tally.needed} replies",
            definite=True,
        )


def merge_targets(groups: list[list[Replica]]) -> list[Replica]:
    """Every distinct replica of several rings' targets, in order of first appearance."""
    return list(dict.fromkeys(t for group in groups for t in group))


class _Combined:
    """The tally view ``MultiWriteRound`` gives: REACHED once every ring reached W, FAILED
    once one cannot; decided once, like ``Tally`` (a late reply never flips it)."""

    __slots__ = ("decided", "rounds")

    def __init__(self, rounds: list[WriteRound]) -> None:
        self.rounds = rounds
        self.decided = Outcome.PENDING
        self.update()

    def update(self) -> Outcome:
        if self.decided is Outcome.PENDING:
            outcomes = [r.tally.outcome for r in self.rounds]
            if Outcome.FAILED in outcomes:
                self.decided = Outcome.FAILED
            elif all(o is Outcome.REACHED for o in outcomes):
                self.decided = Outcome.REACHED
        return self.decided

    @property
    def outcome(self) -> Outcome:
        return self.decided


class MultiWriteRound:
    """One write tallied toward W in each of several rings (a membership change)."""

    __slots__ = ("rounds", "tally", "targets")

    def __init__(self, groups: list[list[Replica]], w: int | Sequence[int], sloppy: bool) -> None:
        needed = [w] * len(groups) if isinstance(w, int) else list(w)
        if len(needed) != len(groups):
            raise ValueError("one W per group")
        self.rounds = [WriteRound(g, k, sloppy) for g, k in zip(groups, needed, strict=True)]
        self.targets = merge_targets(groups)
        self.tally = _Combined(self.rounds)

    def reply(self, target: Replica, reply: Reply) -> Outcome:
        for r in self.rounds:
            if target in r.targets:
                r.reply(target, reply)
        return self.tally.update()

    @property
    def maybe_applied(self) -> bool:
        return any(r.maybe_applied for r in self.rounds)

    def error(self) -> KVError:
        failing = next(
            (r for r in self.rounds if r.tally.outcome is Outcome.FAILED), self.rounds[0]
        )  # the ring that decided the failure (a ring failing later cannot flip it)
        if not self.maybe_applied:
            return failing.error()  # definite: nothing can land in either ring
        which = "old" if failing is self.rounds[0] else "new"
        failed = ", ".join(f"{node} ({reply.value})" for node, reply in failing.failed.items())
        return QuorumFailed(
            f"only {failing.tally.acks} of {failing.tally.needed} required replicas of the "
            f"{which} ring acknowledged during a membership change (failed: {failed}); the "
            f"write may still be on some replicas"
        )

    def timeout_error(self, timeout_ms: int) -> KVError:
        return RequestTimeout(
            f"write timed out after {timeout_ms} ms before W acknowledgements in both the "
            f"old and the new ring (a membership change is under way); it may or may not "
            f"have been applied"
        )
