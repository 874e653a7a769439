"""Versions and records: last-writer-wins with hybrid-logical-clock timestamps.

Invariants:
- A ``Timestamp`` orders by (wall, logical, node): the HLC pair first, the node id breaks
  ties, so two distinct writers never produce equal timestamps.
- A ``Record`` with ``value is None`` is a tombstone; it still carries a timestamp and
  wins or loses exactly like a value.
- ``newer(a, b)`` is the single comparison every layer uses (storage, read resolution,
  hint replay), so they can never disagree about which version wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Timestamp(NamedTuple):
    """A hybrid logical clock reading; tuple order is the version order."""

    wall: int  # physical component, microseconds since the epoch
    logical: int  # counter that orders events within one ``wall`` value
    node: str  # node id of the writer: the tie-breaker

    def encode(self) -> tuple[int, int, str]:
        return (self.wall, self.logical, self.node)

    @classmethod
    def decode(cls, raw: tuple[int, int, str] | list[object]) -> Timestamp:
        wall, logical, node = raw
        if not isinstance(wall, int) or not isinstance(logical, int) or not isinstance(node, str):
            raise ValueError(f"malformed timestamp {raw!r}")
        return cls(wall, logical, node)


ZERO = Timestamp(0, 0, "")


@dataclass(frozen=True, slots=True)
class Record:
    """One version of one key, as stored on a replica."""

    key: bytes
    value: bytes | None  # None: a tombstone (the key was deleted at ``ts``)
    ts: Timestamp

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


def newer(a: Record | None, b: Record | None) -> Record | None:
    """The winning version of two (either may be absent); ``a`` wins a tie."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b.ts > a.ts else a
