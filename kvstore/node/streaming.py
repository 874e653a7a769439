"""Streaming token ranges from one replica to another, for a membership change.

The node that gains ranges (the *target*) pulls them: it asks the source for chunks
(``stream.scan``) and applies each through the engine's last-writer-wins
``apply_many`` with the records' original timestamps.

Rules and invariants:
- Idempotent: a record already held (or a newer one) is a no-op, so a stream can be
  resumed from any key, or run again whole, without harm. Tombstones stream like values
  (a delete must move with its range, or the key would come back).
- Resumable: a chunk ends at a key (``next``); the pull answers that key, and the next
  pull starts after it. The source scans in key order from there, so a whole stream is
  one scan of the source's store, however many chunks it takes.
- Bounded: a chunk holds at most ``CHUNK_RECORDS`` records (fewer when the target asks)
  or ``CHUNK_BYTES`` bytes and scans at most ``SCAN_KEYS`` keys. A throttled target asks
  for chunks of a tenth of a second's worth of its rate (keys per second) and waits after
  each one, so a stream never starves client calls and takes at least keys / rate.
- Handing back (``drop_unowned``) comes last, once every node reads and writes the new
  ring only (the ``clean-up`` phase): a node removes the exact versions it holds of keys
  that ring does not give it (``Engine.drop``: a newer version written meanwhile stays).
  It stops if the ring changes under it.
- Everything the source sends is validated like any peer input (``PeerLimits``), and
  records far ahead of this node's clock are refused (``observe_peer_ts``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kvstore.core.peer_input import PeerInputError, PeerLimits, fields, integer
from kvstore.core.ring import Ring, token
from kvstore.core.version import Record, Timestamp
from kvstore.net.link import Link
from kvstore.node.ranges import RangeIndex
from kvstore.storage.base import Engine

CHUNK_RECORDS = 2000
CHUNK_BYTES = 1 << 20
SCAN_KEYS = 20000
TIMEOUT_S = 30.0


def _encode(record: Record) -> list[Any]:
    ts = record.ts
    return [record.key, record.value, ts.wall, ts.logical, ts.node]


def _ranges(raw: object) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        raise PeerInputError("ranges must be a list of [first, last]")
    out = []
    for r in raw:
        first, last = fields(r, 2, "a range")
        out.append(
            (integer(first, "first", 0, (1 << 64) - 1), integer(last, "last", 0, (1 << 64) - 1))
        )
    return out


async def scan_chunk(engine: Engine, args: list[Any], limits: PeerLimits) -> list[Any]:
    """The source's side (``stream.scan`` [ranges, after, limit]): [records, next key or
    None when done], at most ``limit`` records."""
    raw_ranges, after, raw_limit = fields(args, 3, "stream.scan")
    ranges = _ranges(raw_ranges)
    most = integer(raw_limit, "limit", 1, CHUNK_RECORDS)
    index = RangeIndex(ranges)
    start = b"" if after is None else limits.key(after) + b"\x00"
    records: list[list[Any]] = []
    size = scanned = 0
    last: bytes | None = None
    async for record in engine.scan(start):
        scanned += 1
        last = record.key
        if index.find(token(record.key)) is not None:
            records.append(_encode(record))
            size += len(record.key) + len(record.value or b"")
        if len(records) >= most or size >= CHUNK_BYTES or scanned >= SCAN_KEYS:
            return [records, last]
    return [records, None]


@dataclass(slots=True)
class Pulled:
    keys: int = 0
    stored: int = 0  # newer than what the target held
    tombstones: int = 0
    size: int = 0  # bytes of keys and values
    chunks: int = 0
    next: bytes | None = None  # where to resume; None: the stream is complete


async def pull(
    link: Link,
    ranges: Sequence[tuple[int, int]],
    after: bytes | None,
    *,
    limits: PeerLimits,
    store: Callable[[list[Record]], Awaitable[int]],
    observe: Callable[[Timestamp], None],
    rate_keys_s: float,
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]],
    now: Callable[[], float] = time.monotonic,
) -> Pulled:
    """The target's side: chunks from ``link``'s node until done or ``budget_s`` is spent."""
    index = RangeIndex(ranges)
    began = now()
    out = Pulled(next=after)
    wire_ranges = [[first, last] for first, last in ranges]
    most = CHUNK_RECORDS if rate_keys_s <= 0 else max(1, min(CHUNK_RECORDS, int(rate_keys_s / 10)))
    while True:
        answer = await link.request(["stream.scan", wire_ranges, out.next, most], TIMEOUT_S)
        raw_records, nxt = fields(answer, 2, "a stream chunk")
        if not isinstance(raw_records, list) or len(raw_records) > most:
            raise PeerInputError(f"a chunk holds a list of at most {most} records")
        records = []
        for raw in raw_records:
            key, value, wall, logical, node = fields(raw, 5, "a record")
            record = limits.record(key, value, wall, logical, node)
            if index.find(token(record.key)) is None:
                raise PeerInputError("the source sent a key outside the ranges asked for")
            observe(record.ts)
            records.append(record)
        out.stored += await store(records) if records else 0
        out.keys += len(records)
        out.tombstones += sum(r.value is None for r in records)
        out.size += sum(len(r.key) + len(r.value or b"") for r in records)
        out.chunks += 1
        if nxt is not None:
            nxt = limits.key(nxt)
            if out.next is not None and nxt <= out.next:
                raise PeerInputError("the source's cursor went backwards")
        out.next = nxt
        if rate_keys_s > 0 and records:
            await sleep(len(records) / rate_keys_s)
        if nxt is None or now() - began >= budget_s:
            return out


@dataclass(slots=True)
class StreamProgress:
    """What one source has streamed into this node for the change of ``epoch``."""

    source: str
    epoch: int
    keys: int = 0
    bytes: int = 0
    done: bool = False


@dataclass(slots=True)
class Dropped:
    scanned: int = 0
    dropped: int = 0


async def drop_unowned(
    engine: Engine,
    me: str,
    ring: Ring,
    n: int,
    unchanged: Callable[[], bool],
    batch: int = 500,
) -> Dropped:
    """Remove from ``engine`` every key ``ring`` does not place on ``me`` (N replicas)."""
    out = Dropped()
    doomed: list[Record] = []

    async def flush() -> None:
        if not unchanged():
            raise RuntimeError("the ring changed during the clean-up: run it again")
        out.dropped += await engine.drop(doomed)
        doomed.clear()

    async for record in engine.scan():
        out.scanned += 1
        if me not in ring.primaries(record.key, n):
            doomed.append(record)
            if len(doomed) >= batch:
                await flush()
    if doomed:
        await flush()
    return out
