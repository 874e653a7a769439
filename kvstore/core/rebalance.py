"""Planning a membership change: which token ranges move, from which nodes to which.

Pure: two ring descriptions in, a plan out; ``kvstore cluster plan`` shows it, and the
change that carries it out (streaming, the epoch switch, cleanup) follows it.

Rules and invariants:
- Token space is ``[0, 2**64)``, cut at every virtual-node token of either ring. Inside
  one cut both rings name one replica set, so a key's replicas change exactly when its
  token falls in a range whose sets differ; adjacent cuts with the same pair of sets are
  one range. The ranges cover the space once, in order, without gaps.
- A node that gains a range takes the place of one that drops it, and streams from that
  node: then every key is on as many replicas after the change as before (a write
  acknowledged by W old replicas is on W new ones, whichever replica missed it). Streaming
  from a replica that keeps the range would lose a write that replica missed. When the
  dropped node is dead, no one copy stands in for it: the gained node merges every live
  old replica's (last writer wins), so a write any survivor holds reaches it. A range
  none of whose current replicas is alive is refused, never planned with a gap.
- Refused with a reason (``PlanRefused``): fewer than N nodes after the change, a change
  of N or of vnodes (every key would move: that is a new cluster, not a membership
  change), a dead node that is not a member or is kept, an unknown or repeated node id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kvstore.core.ring import Ring

SPACE = 1 << 64


class PlanRefused(ValueError):
    """The change asked for cannot be made as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class RingSpec:
    """What a ring is made of: its members (by id), N and the virtual nodes per member."""

    members: tuple[str, ...]
    n: int
    vnodes: int


@dataclass(frozen=True, slots=True)
class Stream:
    """``source`` sends the keys of one range to ``target``, which gains it."""

    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Range:
    """Keys whose token is in ``[start, end)``, replicated on ``before`` now and on
    ``after`` once the change is done (both in preference-list order)."""

    start: int
    end: int
    before: tuple[str, ...]
    after: tuple[str, ...]
    streams: tuple[Stream, ...]

    @property
    def moves(self) -> bool:
        return set(self.before) != set(self.after)

    @property
    def share(self) -> float:
        """The range's share of token space (of keys, for a uniform hash)."""
        return (self.end - self.start) / SPACE

    @property
    def dropped(self) -> tuple[str, ...]:
        """Nodes that hold the range now and not afterwards (they clean it up last)."""
        return tuple(node for node in self.before if node not in self.after)


@dataclass(frozen=True, slots=True)
class Plan:
    before: RingSpec
    after: RingSpec
    dead: frozenset[str]
    ranges: tuple[Range, ...]  # every range of token space, moving or not

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(n for n in self.after.members if n not in self.before.members)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(n for n in self.before.members if n not in self.after.members)

    @property
    def moving(self) -> tuple[Range, ...]:
        return tuple(r for r in self.ranges if r.moves)

    @property
    def empty(self) -> bool:
        return not self.moving and not self.added and not self.removed

    def streams(self) -> dict[Stream, list[Range]]:
        """Each (source, target) pair with the ranges it carries, in token order."""
        out: dict[Stream, list[Range]] = defaultdict(list)
        for r in self.moving:
            for stream in r.streams:
                out[stream].append(r)
        return dict(sorted(out.items(), key=lambda kv: (kv[0].source, kv[0].target)))

    def ownership(self) -> dict[str, tuple[float, float]]:
        """Each node's share of token space it replicates, before and after."""
        shares: dict[str, list[float]] = {
            n: [0.0, 0.0] for n in (*self.before.members, *self.added)
        }
        for r in self.ranges:
            for node in r.before:
                shares[node][0] += r.share
            for node in r.after:
                shares[node][1] += r.share
        return {node: (before, after) for node, (before, after) in shares.items()}


def plan(before: RingSpec, after: RingSpec, dead: Iterable[str] = ()) -> Plan:
    """The ranges that move when ``before``'s membership becomes ``after``'s."""
    dead_set = frozenset(dead)
    _check(before, after, dead_set)
    old, new = Ring(before.members, before.vnodes), Ring(after.members, after.vnodes)
    cuts = sorted({0, *old.tokens, *new.tokens})
    ranges: list[Range] = []
    for i, start in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else SPACE
        was, will = old.walk_at(start)[: before.n], new.walk_at(start)[: after.n]
        if ranges and ranges[-1].before == was and ranges[-1].after == will:
            last = ranges.pop()
            ranges.append(Range(last.start, end, was, will, last.streams))
            continue
        ranges.append(Range(start, end, was, will, _streams(start, end, was, will, dead_set)))
    return Plan(before, after, dead_set, tuple(ranges))


def _streams(
    start: int, end: int, was: Sequence[str], will: Sequence[str], dead: frozenset[str]
) -> tuple[Stream, ...]:
    gained = [node for node in will if node not in was]
    if not gained:
        return ()
    alive = [node for node in was if node not in dead]
    if not alive:
        raise PlanRefused(
            f"tokens [{start:#x}, {end:#x}) have no live replica to stream from: "
            f"{', '.join(was)} are all dead (their data is lost; restore a node first)"
        )
    dropped = [node for node in was if node not in will]
    if len(dropped) != len(gained):  # a ring of fewer than N members: no pairing
        return tuple(Stream(source, node) for node in gained for source in alive)
    out: list[Stream] = []
    for target, leaving in zip(gained, dropped, strict=True):
        if leaving in dead:  # no single copy stands in for it: merge every survivor's
            out.extend(Stream(source, target) for source in alive)
        else:  # the new replica takes the leaving one's place with its exact copy
            out.append(Stream(leaving, target))
    return tuple(out)


def _check(before: RingSpec, after: RingSpec, dead: frozenset[str]) -> None:
    for spec, name in ((before, "the current ring"), (after, "the desired ring")):
        if len(set(spec.members)) != len(spec.members):
            raise PlanRefused(f"{name} names a node twice: {', '.join(spec.members)}")
        if not spec.members:
            raise PlanRefused(f"{name} has no members")
    if after.n != before.n:
        raise PlanRefused(
            f"N changes from {before.n} to {after.n}: a membership change keeps N "
            f"(changing it re-replicates every key; build a new cluster and copy the data)"
        )
    if after.vnodes != before.vnodes:
        raise PlanRefused(
            f"vnodes changes from {before.vnodes} to {after.vnodes}: a membership change "
            f"keeps vnodes (changing them moves every key)"
        )
    if len(after.members) < after.n:
        raise PlanRefused(
            f"the change leaves {len(after.members)} nodes ({', '.join(after.members)}), "
            f"fewer than N={after.n}: every key needs N distinct replicas"
        )
    for node in sorted(dead):
        if node not in before.members:
            raise PlanRefused(f"--dead {node}: not a member of the current ring")
        if node in after.members:
            raise PlanRefused(
                f"--dead {node}: still in the desired membership; remove it from the "
                f"config (with a new node in its place to replace it)"
            )
