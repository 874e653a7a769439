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


class RangeIndex:
    """Validated ranges, and which of them a token falls in (one bisect)."""

    __slots__ = ("_firsts", "_order", "_ranges")

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        if len(ranges) > MAX_RANGES:
            raise ValueError(f"{len(ranges)} ranges asked for; at most {MAX_RANGES}")
        for i, (first, last) in enumerate(ranges):
            if not 0 <= first <= last <= TOP:
                raise ValueError(
                    f"range {i} ({first:#x}..{last:#x}) is not 0 <= first <= last < 2^64"
                )
        order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        for a, b in itertools.pairwise(order):
            if ranges[b][0] <= ranges[a][1]:
                raise ValueError(f"ranges {a} and {b} overlap")
        self._ranges = ranges
        self._order = order
        self._firsts = [ranges[i][0] for i in order]

    def find(self, t: int) -> int | None:
        """The index (as given) of the range holding token ``t``, or None."""
        at = bisect.bisect_right(self._firsts, t) - 1
        if at < 0:
            return None
        i = self._order[at]
        return i if t <= self._ranges[i][1] else None


async def range_stats(engine: Engine, ranges: Sequence[tuple[int, int]]) -> list[RangeCount]:
    """One count per range, in the order asked."""
    index = RangeIndex(ranges)
    counts = [RangeCount() for _ in ranges]
    if not ranges:
        return counts
    async for record in engine.scan():
        i = index.find(token(record.key))
        if i is None:
            continue
        count = counts[i]
        count.keys += 1
        if record.value is None:
            count.tombstones += 1
        count.bytes += len(record.key) + len(record.value or b"")
    return counts
