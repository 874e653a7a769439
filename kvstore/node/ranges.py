"""What a node stores per token range: the keys, tombstones and bytes a move would stream.

Rules: ranges are inclusive ``(first, last)`` token pairs, disjoint, at most
``MAX_RANGES`` of them; anything else is refused with ``ValueError`` naming the problem
before the store is read. One scan of the store answers every range.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from kvstore.core.ring import token
from kvstore.storage.base import Engine

MAX_RANGES = 65536
TOP = (1 << 64) - 1


@dataclass(slots=True)
class RangeCount:
    keys: int = 0
    tombstones: int = 0
    bytes: int = 0


def check_ranges(ranges: Sequence[tuple[int, int]]) -> list[int]:
    """The ranges' indexes sorted by ``first``; ValueError if they are not valid."""
    if len(ranges) > MAX_RANGES:
        raise ValueError(f"{len(ranges)} ranges asked for; at most {MAX_RANGES}")
    for i, (first, last) in enumerate(ranges):
        if not 0 <= first <= last <= TOP:
            raise ValueError(f"range {i} ({first:#x}..{last:#x}) is not 0 <= first <= last < 2^64")
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    for a, b in itertools.pairwise(order):
        if ranges[b][0] <= ranges[a][1]:
            raise ValueError(f"ranges {a} and {b} overlap")
    return order


async def range_stats(engine: Engine, ranges: Sequence[tuple[int, int]]) -> list[RangeCount]:
    """One count per range, in the order asked."""
    order = check_ranges(ranges)
    firsts = [ranges[i][0] for i in order]
    counts = [RangeCount() for _ in ranges]
    if not ranges:
        return counts
    async for record in engine.scan():
        t = token(record.key)
        at = bisect.bisect_right(firsts, t) - 1
        if at < 0:
            continue
        i = order[at]
        if t > ranges[i][1]:
            continue
        count = counts[i]
        count.keys += 1
        if record.value is None:
            count.tombstones += 1
        count.bytes += len(record.key) + len(record.value or b"")
    return counts
