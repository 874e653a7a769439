"""Anti-entropy's messages and results: encodings, chunking and the per-round report.

Rules:
- Records and entries travel as flat msgpack lists; decoding validates every field a
  peer sends through ``PeerLimits`` (``kvstore.core.peer_input``), so a bad message
  raises ``PeerInputError`` and fails that exchange alone.
- ``wire_size`` is what the byte counters count: the msgpack payload, gRPC framing aside.
- Chunks keep each message under a fixed number of items or record bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from kvstore.core.merkle import Entry
from kvstore.core.peer_input import PeerInputError, PeerLimits, fields
from kvstore.core.ring import Ring
from kvstore.core.version import Record

# (op, args) -> the peer's reply payload; raises on an error reply or no reply.
Call = Callable[[str, list[Any]], Awaitable[Any]]


def wire_size(payload: Any) -> int:
    """Bytes a payload takes on the replica stream (msgpack, as the codec packs it)."""
    return len(msgpack.packb(payload, use_bin_type=True))


def encode_full(record: Record) -> list[Any]:
    ts = record.ts
    return [record.key, record.value, ts.wall, ts.logical, ts.node]


def decode_full(raw: object, limits: PeerLimits) -> Record:
    key, value, wall, logical, node = fields(raw, 5, "a record")
    return limits.record(key, value, wall, logical, node)


def encode_entry(entry: Entry) -> list[Any]:
    ts = entry.ts
    return [entry.key, ts.wall, ts.logical, ts.node, entry.tombstone]


def decode_entry(raw: object, limits: PeerLimits) -> Entry:
    key, wall, logical, node, tombstone = fields(raw, 5, "an entry")
    if type(tombstone) is not bool:
        raise PeerInputError("an entry's tombstone flag must be a boolean")
    return Entry(limits.key(key), limits.timestamp(wall, logical, node), tombstone)


def permissive_limits(ring: Ring) -> PeerLimits:
    """Limits for replicas wired together in one process (tests, benchmarks)."""
    return PeerLimits(64 * 1024, 3 << 20, frozenset(ring.nodes), 1 << 62)


def chunks_by_count(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def chunks_by_bytes(records: Iterable[Record], limit: int) -> list[list[Record]]:
    out: list[list[Record]] = []
    current: list[Record] = []
    size = 0
    for record in records:
        cost = len(record.key) + len(record.value or b"") + 32
        if current and size + cost > limit:
            out.append(current)
            current, size = [], 0
        current.append(record)
        size += cost
    if current:
        out.append(current)
    return out


async def gather_limited(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the calls with at most ``limit`` in flight; results in order."""
    results: list[Any] = [None] * len(calls)
    for start in range(0, len(calls), limit):
        batch = calls[start : start + limit]
        done = await asyncio.gather(*(c() for c in batch))
        results[start : start + len(batch)] = done
    return results


@dataclass(slots=True)
class PeerRound:
    """What one exchange with one peer did."""

    peer: str
    keys_pulled: int = 0  # newer versions fetched from the peer and stored here
    keys_pushed: int = 0  # newer versions sent to the peer and stored there
    leaves_differing: int = 0
    hashes_compared: int = 0
    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    digests: bool = False  # trees summed from digests (else built from a full scan)
    error: str = ""

    @property
    def keys_repaired(self) -> int:
        return self.keys_pulled + self.keys_pushed


@dataclass(slots=True)
class RepairReport:
    node: str
    rounds: list[PeerRound] = field(default_factory=list)

    @property
    def keys_repaired(self) -> int:
        return sum(r.keys_repaired for r in self.rounds)

    @property
    def exchanges(self) -> int:
        return sum(1 for r in self.rounds if not r.error)

    @property
    def bytes(self) -> int:
        return sum(r.bytes_sent + r.bytes_received for r in self.rounds)

    @property
    def errors(self) -> list[str]:
        return [f"{r.peer}: {r.error}" for r in self.rounds if r.error]
