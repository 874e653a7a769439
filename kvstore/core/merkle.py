"""Merkle (hash) trees over the ring's token space, for anti-entropy between two replicas.

A tree covers the keys two nodes *both* replicate (keys whose N primaries include both,
see ``shared``), so equal trees mean the pair agrees on every key it shares.

Shape and rules:
- A tree of ``depth`` d has 2^d leaves; leaf i holds the entries whose 64-bit key token
  (``kvstore.core.ring.token``, the same hash that places keys on the ring) has i as its
  top d bits. Neighbouring leaves are neighbouring token ranges, so a subtree is a
  contiguous slice of the ring.
- An entry is (key, timestamp, tombstone): what identifies a version, never the value
  (a version's timestamp is unique to one write, so equal entries mean equal records).
- A leaf's hash covers its entries sorted by key; an internal node hashes its two
  children. An empty subtree hashes to ``EMPTY``, so trees that are equal but sparse
  compare as cheaply as full ones, and insertion order never changes a hash.
- Node (level, index): level 0 is the root, level d the leaves; children of (l, i) are
  (l+1, 2i) and (l+1, 2i+1).
- ``TopDown`` is the comparison protocol, pure: it says which hashes to ask the other
  side for, is fed the answers, and descends only below nodes whose hashes differ. The
  runtime does the I/O; ``diff`` runs the same protocol against a local tree.
- ``reconcile`` decides, per key, which side holds the newer version: the newer one is
  copied to the other side (tombstones included: a delete is a record like any other).

Pure: no I/O, time or randomness; hashing is ``hashlib`` (deterministic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

from kvstore.core.ring import Ring, token
from kvstore.core.version import Record, Timestamp

DIGEST_BYTES = 16  # 128-bit hashes: collisions are negligible, exchanges stay small
EMPTY = bytes(DIGEST_BYTES)
MAX_DEPTH = 20
TOKEN_BITS = 64


class Entry(NamedTuple):
    """One version of one key, as the trees see it (no value)."""

    key: bytes
    ts: Timestamp
    tombstone: bool


def entry_of(record: Record) -> Entry:
    return Entry(record.key, record.ts, record.value is None)


class HashTree(Protocol):
    """What ``TopDown`` compares: a full tree (``MerkleTree``) or a digest tree."""

    @property
    def depth(self) -> int: ...

    def hashes(self, level: int, indexes: Sequence[int]) -> list[bytes]: ...


def _h() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=DIGEST_BYTES)


def leaf_of(key: bytes, depth: int) -> int:
    """The leaf index of ``key`` in a tree of ``depth``."""
    return token(key) >> (TOKEN_BITS - depth)


def hash_entries(entries: Iterable[Entry]) -> bytes:
    """The hash of one leaf: its entries in key order; ``EMPTY`` when there are none."""
    ordered = sorted(entries)
    if not ordered:
        return EMPTY
    # One encoding per entry, length-prefixed where a field is free-form, so no two
    # different entry lists encode alike; one hash update per leaf (this loop is the
    # hot path of building a tree).
    h = _h()
    h.update(
        b"".join(
            b"%d:%b%d,%d,%d:%b%b"
            % (
                len(key),
                key,
                ts.wall,
                ts.logical,
                len(node := ts.node.encode("utf-8")),
                node,
                b"T" if tombstone else b"V",
            )
            for key, ts, tombstone in ordered
        )
    )
    return h.digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    if left == EMPTY and right == EMPTY:
        return EMPTY
    h = _h()
    h.update(left)
    h.update(right)
    return h.digest()


class MerkleTree:
    """A complete binary hash tree of ``depth`` levels below the root."""

    def __init__(self, depth: int, entries: Iterable[Entry] = ()) -> None:
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth {depth} must be between 0 and {MAX_DEPTH}")
        self.depth = depth
        leaves: list[list[Entry]] = [[] for _ in range(1 << depth)]
        shift = TOKEN_BITS - depth
        count = 0
        for entry in entries:
            leaves[token(entry.key) >> shift].append(entry)
            count += 1
        self.count = count
        self._leaves = leaves
        level = [hash_entries(leaf) for leaf in leaves]
        levels = [level]
        while len(level) > 1:
            level = [hash_children(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            levels.append(level)
        levels.reverse()
        self._levels = levels  # _levels[l][i]: the hash of node (l, i)

    @property
    def root(self) -> bytes:
        return self._levels[0][0]

    def hashes(self, level: int, indexes: Sequence[int]) -> list[bytes]:
        """Hashes of nodes at ``level`` (raises IndexError/ValueError on a bad request)."""
        if not 0 <= level <= self.depth:
            raise ValueError(f"level {level} is outside 0..{self.depth}")
        row = self._levels[level]
        out = []
        for i in indexes:
            if not 0 <= i < len(row):
                raise IndexError(f"node ({level}, {i}) does not exist")
            out.append(row[i])
        return out

    def leaf(self, index: int) -> list[Entry]:
        """The entries of one leaf, in key order."""
        if not 0 <= index < len(self._leaves):
            raise IndexError(f"leaf {index} does not exist")
        return sorted(self._leaves[index])


def descendants(indexes: Iterable[int], levels_down: int) -> list[int]:
    """Every node ``levels_down`` below the given nodes, in order."""
    span = 1 << levels_down
    return [child for i in indexes for child in range(i * span, (i + 1) * span)]


class TopDown:
    """The comparison protocol from one side: ask, compare, descend only where unequal.

    ``request()`` gives the (level, indexes) whose hashes to fetch from the other side, or
    None when the comparison is finished; ``receive(hashes)`` takes the answer (same order).
    ``step`` levels are skipped per round trip: fewer round trips, a few more hashes.
    Afterwards ``leaves`` lists exactly the leaves whose hashes differ, ascending.
    """

    def __init__(self, tree: HashTree, step: int = 4) -> None:
        if step < 1:
            raise ValueError("step must be at least 1")
        self.tree = tree
        self.step = step
        self.level = 0
        self._frontier: list[int] | None = [0]  # nodes to ask about next, at self.level
        self.leaves: list[int] = []
        self.compared = 0  # hashes compared: the cost of the exchange

    def request(self) -> tuple[int, list[int]] | None:
        if not self._frontier:
            return None
        return self.level, self._frontier

    def receive(self, theirs: Sequence[bytes]) -> None:
        if not self._frontier:
            raise RuntimeError("receive() without an outstanding request")
        if len(theirs) != len(self._frontier):
            raise ValueError(f"expected {len(self._frontier)} hashes, got {len(theirs)}")
        mine = self.tree.hashes(self.level, self._frontier)
        self.compared += len(mine)
        differing = [i for i, a, b in zip(self._frontier, mine, theirs, strict=True) if a != b]
        if self.level == self.tree.depth:
            self.leaves = differing
            self._frontier = None
            return
        down = min(self.step, self.tree.depth - self.level)
        self.level += down
        self._frontier = descendants(differing, down) if differing else None

    @property
    def done(self) -> bool:
        return not self._frontier


def diff(mine: MerkleTree, theirs: MerkleTree, step: int = 4) -> list[int]:
    """The leaves whose contents differ between two trees of equal depth (top-down)."""
    if mine.depth != theirs.depth:
        raise ValueError("trees of different depths cannot be compared")
    walk = TopDown(mine, step)
    while (ask := walk.request()) is not None:
        level, indexes = ask
        walk.receive(theirs.hashes(level, indexes))
    return walk.leaves


class Reconciliation(NamedTuple):
    pull: list[bytes]  # keys where the other side is newer (or only it has the key)
    push: list[bytes]  # keys where this side is newer (or only it has the key)


def reconcile(mine: Iterable[Entry], theirs: Iterable[Entry]) -> Reconciliation:
    """Per key, which way the newer version must travel; equal versions stay put."""
    have = {e.key: e.ts for e in mine}
    other = {e.key: e.ts for e in theirs}
    pull = sorted(k for k, ts in other.items() if k not in have or ts > have[k])
    push = sorted(k for k, ts in have.items() if k not in other or ts > other[k])
    return Reconciliation(pull, push)


def depth_for(count: int, leaf_target: int = 16, max_depth: int = 16) -> int:
    """A depth giving about ``leaf_target`` entries per leaf (at least 1 level)."""
    depth = 1
    while depth < max_depth and (count >> depth) > leaf_target:
        depth += 1
    return depth


# ------------------------------------------------------------- which keys a pair shares


def shared(ring: Ring, key: bytes, n: int, a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are both primaries of ``key`` (so both must hold it)."""
    primaries = ring.primaries(key, n)
    return a in primaries and b in primaries


def sharing_peers(ring: Ring, node: str, n: int) -> list[str]:
    """The nodes that are co-primaries with ``node`` for some range of the ring."""
    peers: set[str] = set()
    for replicas in ring.replica_sets(n):
        if node in replicas:
            peers.update(replicas)
    peers.discard(node)
    return sorted(peers)


def split_by_peer(
    ring: Ring, me: str, n: int, peers: Iterable[str], entries: Iterable[Entry]
) -> dict[str, list[Entry]]:
    """For each peer, the entries of keys that both ``me`` and that peer replicate."""
    out: dict[str, list[Entry]] = {peer: [] for peer in peers}
    for entry in entries:
        primaries = ring.primaries(entry.key, n)
        if me not in primaries:
            continue  # not ours to repair (stale data from an older ring, say)
        for node in primaries:
            bucket = out.get(node)
            if bucket is not None and node != me:
                bucket.append(entry)
    return out


def is_live(cutoff_us: int) -> Callable[[Entry], bool]:
    """A filter that hides tombstones older than ``cutoff_us`` (due to be purged).

    Both sides of an exchange use the same cutoff, so tombstones past the grace period
    are invisible to repair instead of being copied back onto a replica that purged them.
    """

    def live(entry: Entry) -> bool:
        return not (entry.tombstone and entry.ts.wall < cutoff_us)

    return live
