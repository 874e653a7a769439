"""Incremental Merkle digests: per token bucket, kept up to date as records change.

A full anti-entropy round (``kvstore.core.merkle``) scans the store and hashes every
entry to build its tree. Here a storage engine keeps, for each of the 2^depth *buckets*
of the token space (bucket b holds the keys whose 64-bit token has b as its top
``depth`` bits, as a Merkle leaf does), one additive digest of the entries it holds,
updated in the commit that changes them; a tree for one exchange is then summed from
those digests without reading a single record.

Rules and invariants:
- An entry's digest is a 128-bit blake2b of (key, timestamp, tombstone), the same
  fields ``merkle.hash_entries`` covers, read as two 64-bit lanes; a bucket's digest is
  the lane-wise sum of its entries' digests modulo 2^64 (an additive multiset hash,
  AdHash, twice). Sums are independent of order, so replacing a version is
  ``- old + new`` and two replicas holding the same entries have equal digests whatever
  order the writes came in: 16 bytes a bucket. The index keeps its lanes in a stdlib
  array (cheap to update one bucket from Python on every write) with a numpy ``uint64``
  view of the same memory, whose arithmetic wraps modulo 2^64, for whole-table work: a
  tree is one cumulative sum.
- The index is kept at its finest depth; an exchange sums it to the depth it needs
  (``at_depth``, ``tree_depth``: about one entry a leaf), so a tree's size follows the
  store's, not the index's.
- ``DigestIndex.change(key, old, new)`` is the one way a digest moves; the engine calls
  it for every committed change to its data (never for hints), with the entry it
  replaced (None: the key was absent) and the one now stored (None: removed).
- Tombstones are entries until purged; the tombstone-grace cutoff of an exchange is
  applied where entries are compared one by one, so a tombstone one replica purged and
  the other not yet makes a leaf differ for a while, never a wrong repair.
- A tree for the pair (me, peer) covers the token ranges where both are among a key's
  N primaries (``shared_ranges``). A bucket entirely inside them contributes its digest;
  a bucket straddling a range boundary (*boundary*) holds keys the pair does not share,
  so its leaf value is summed from its shared entries by the caller (``leaf_values``);
  every other bucket is 0. An internal node is the sum of the leaves below it, read off
  the leaves' prefix sums, so equal roots mean equal multisets of shared entries (up to
  a 2^-128 collision).
- The digests are not authenticated: peers are mutually authenticated replicas, and a
  collision only hides a difference from one round's comparison, never corrupts data.

Pure: no I/O, time or randomness.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from kvstore.core.merkle import TOKEN_BITS, Entry
from kvstore.core.ring import Ring, token

DEFAULT_DEPTH = 20  # 1,048,576 buckets (16 MB): one key each at a million keys
MAX_DEPTH = 22
TOKEN_END = 1 << TOKEN_BITS  # one past the largest token
DIGEST_BYTES = 16

LANE = np.dtype("<u8")  # little-endian on the wire and in memory
if sys.byteorder != "little":  # the index's stdlib array is in host order
    raise ImportError("kvstore's digest index assumes a little-endian host")
Lanes = NDArray[np.uint64]  # one digest: 2 lanes; a table of them: shape (n, 2)


def entry_digest(key: bytes, ts_wall: int, ts_logical: int, ts_node: str, tombstone: bool) -> bytes:
    """The 16-byte digest of one entry (length-prefixed fields: no two encode alike)."""
    node = ts_node.encode("utf-8")
    data = b"%d:%b%d,%d,%d:%b%b" % (
        len(key),
        key,
        ts_wall,
        ts_logical,
        len(node),
        node,
        b"T" if tombstone else b"V",
    )
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def lanes_of(entry: Entry) -> Lanes:
    ts = entry.ts
    raw = entry_digest(entry.key, ts.wall, ts.logical, ts.node, entry.tombstone)
    return np.frombuffer(raw, dtype=LANE)


_M64 = (1 << 64) - 1


def _split(raw: bytes) -> tuple[int, int]:
    """A digest's two lanes as ints (the same little-endian halves ``lanes_of`` reads)."""
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def _ints(entry: Entry) -> tuple[int, int]:
    ts = entry.ts
    return _split(entry_digest(entry.key, ts.wall, ts.logical, ts.node, entry.tombstone))


def sum_entries(entries: Iterable[Entry]) -> Lanes:
    total = np.zeros(2, dtype=np.uint64)
    for entry in entries:
        total += lanes_of(entry)
    return total


def as_bytes(lanes: Lanes) -> bytes:
    """A digest as it goes on the wire: two little-endian 64-bit lanes."""
    return lanes.astype(LANE, copy=False).tobytes()


class DigestIndex:
    """One additive digest per token bucket over every entry an engine stores."""

    __slots__ = ("_lanes", "_shift", "depth", "entries", "sums")

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"digest depth {depth} must be between 1 and {MAX_DEPTH}")
        self.depth = depth
        self._shift = TOKEN_BITS - depth
        # Updated item by item on every write: a stdlib array is several times cheaper
        # to touch from Python than numpy; ``sums`` is a numpy view of the same memory
        # (bucket b's lanes at 2b, 2b+1), for whole-table work.
        self._lanes = array("Q", bytes(16 << depth))
        self.sums: Lanes = np.frombuffer(self._lanes, dtype=np.uint64).reshape(-1, 2)
        self.entries = 0  # how many entries the digests cover

    def bucket(self, key: bytes) -> int:
        return token(key) >> self._shift

    def change(self, key: bytes, old: Entry | None, new: Entry | None) -> None:
        """Account for ``old`` (or nothing) being replaced by ``new`` (or nothing)."""
        if old == new:
            return
        at = (token(key) >> self._shift) << 1
        lanes = self._lanes
        lo, hi = lanes[at], lanes[at + 1]
        if old is not None:
            d_lo, d_hi = _ints(old)
            lo, hi = lo - d_lo, hi - d_hi
            self.entries -= 1
        if new is not None:
            d_lo, d_hi = _ints(new)
            lo, hi = lo + d_lo, hi + d_hi
            self.entries += 1
        lanes[at], lanes[at + 1] = lo & _M64, hi & _M64

    def add_rows(self, rows: Iterable[tuple[bytes, int, int, str, int]]) -> None:
        """Count stored entries given as (key, wall, logical, node, tombstone) rows: the
        build when an engine opens, streamed, without an ``Entry`` per row."""
        lanes, shift, count = self._lanes, self._shift, 0
        for key, wall, logical, node, tombstone in rows:
            d_lo, d_hi = _split(entry_digest(key, wall, logical, node, bool(tombstone)))
            at = (token(key) >> shift) << 1
            lanes[at] = (lanes[at] + d_lo) & _M64
            lanes[at + 1] = (lanes[at + 1] + d_hi) & _M64
            count += 1
        self.entries += count

    def apply(self, changes: Iterable[tuple[bytes, Entry | None, Entry | None]]) -> None:
        for key, old, new in changes:
            self.change(key, old, new)

    def at_depth(self, depth: int) -> Lanes:
        """A copy of the digests summed to ``depth`` levels (a coarser bucket is the sum
        of the finer buckets it holds: its token range is theirs)."""
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth {depth} is outside 1..{self.depth}")
        if depth == self.depth:
            return self.sums.copy()
        fine = self.sums.reshape(1 << depth, 1 << (self.depth - depth), 2)
        coarse: Lanes = fine.sum(axis=1, dtype=LANE)
        return coarse

    def tree_depth(self) -> int:
        """The depth an exchange uses: about one entry a leaf, so the entries read for a
        differing leaf are few, and a small store gets a small tree."""
        return max(1, min(self.depth, self.entries.bit_length()))

    def same_as(self, other: DigestIndex) -> bool:
        return (
            self.depth == other.depth
            and self.entries == other.entries
            and bool(np.array_equal(self.sums, other.sums))
        )


def bucket_range(bucket: int, depth: int) -> tuple[int, int]:
    """The half-open token range [lo, hi) of one bucket."""
    shift = TOKEN_BITS - depth
    return bucket << shift, (bucket + 1) << shift


def ranges_of(buckets: Iterable[int], depth: int) -> list[tuple[int, int]]:
    """The token ranges of some buckets, neighbours merged, ascending."""
    out: list[tuple[int, int]] = []
    for b in sorted(set(buckets)):
        lo, hi = bucket_range(b, depth)
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def shared_ranges(ring: Ring, n: int, a: str, b: str) -> list[tuple[int, int]]:
    """The token ranges [lo, hi) whose keys have both ``a`` and ``b`` among N primaries.

    A key with token t belongs to the ring position ``bisect_right(tokens, t)``, so the
    range of position i is [tokens[i-1], tokens[i]), and position 0 wraps around the
    end of the token space.
    """
    tokens = ring.tokens
    pieces: list[tuple[int, int]] = []
    for i, hi in enumerate(tokens):
        if i == 0:
            continue
        lo = tokens[i - 1]
        primaries = ring.walk_at(lo)[:n]
        if a in primaries and b in primaries and lo < hi:
            pieces.append((lo, hi))
    wrap = ring.walk_at(tokens[-1])[:n]
    if a in wrap and b in wrap:
        pieces.append((tokens[-1], TOKEN_END))
        if tokens[0] > 0:
            pieces.append((0, tokens[0]))
    pieces.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in pieces:
        if merged and merged[-1][1] >= lo:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def classify(ranges: Sequence[tuple[int, int]], depth: int) -> tuple[list[range], list[int]]:
    """(runs of buckets wholly inside ``ranges``, buckets that straddle a range edge)."""
    shift = TOKEN_BITS - depth
    inside: list[range] = []
    boundary: list[int] = []
    for lo, hi in ranges:
        first = lo >> shift  # the bucket holding lo
        last = (hi - 1) >> shift  # the bucket holding hi - 1
        full_from = first if lo == first << shift else first + 1
        full_to = last + 1 if hi == (last + 1) << shift else last
        if full_from < full_to:
            inside.append(range(full_from, full_to))
        for edge in {first, last}:
            if not (full_from <= edge < full_to):
                boundary.append(edge)
    # a bucket cut by the edges of two ranges is listed once
    return inside, sorted(set(boundary))


def leaf_values(
    index_sums: Lanes, inside: Iterable[range], boundary: Mapping[int, Lanes], depth: int
) -> Lanes:
    """Leaves of one pair's tree: digests of inside buckets, the given boundary values."""
    leaves = np.zeros((1 << depth, 2), dtype=LANE)
    for run in inside:
        leaves[run.start : run.stop] = index_sums[run.start : run.stop]
    for b, value in boundary.items():
        leaves[b] = value
    return leaves


class DigestTree:
    """A sum tree over given leaves, with ``MerkleTree``'s interface for ``TopDown``.

    Only the leaves' prefix sums are kept: node (l, i) covers leaves [i*s, (i+1)*s) with
    s = 2^(depth-l), so its value is ``prefix[(i+1)*s] - prefix[i*s]`` (mod 2^64 a lane).
    ``edges`` are the leaves summed from their entries (cut by a shared range's edge):
    where an exchange must still pick out the shared keys one by one.
    """

    def __init__(
        self, depth: int, leaves: Lanes, count: int = 0, edges: Iterable[int] = ()
    ) -> None:
        if leaves.shape != (1 << depth, 2):
            raise ValueError(f"a tree of depth {depth} has {1 << depth} leaves, not {len(leaves)}")
        self.depth = depth
        self.count = count
        self.edges = frozenset(edges)
        prefix = np.zeros((len(leaves) + 1, 2), dtype=LANE)
        np.cumsum(leaves, axis=0, dtype=LANE, out=prefix[1:])
        self._prefix = prefix

    @property
    def root(self) -> bytes:
        return as_bytes(self._prefix[-1] - self._prefix[0])

    def hashes(self, level: int, indexes: Sequence[int]) -> list[bytes]:
        if not 0 <= level <= self.depth:
            raise ValueError(f"level {level} is outside 0..{self.depth}")
        width = 1 << level
        for i in indexes:
            if not 0 <= i < width:
                raise IndexError(f"node ({level}, {i}) does not exist")
        if not indexes:
            return []
        span = 1 << (self.depth - level)
        at = np.asarray(indexes, dtype=np.int64) * span
        raw = as_bytes(self._prefix[at + span] - self._prefix[at])
        return [raw[16 * j : 16 * j + 16] for j in range(len(indexes))]
