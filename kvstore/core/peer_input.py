"""Validation of what a peer sends, pure: a peer's message is checked like a client's.

Rules and invariants:
- Every field of a replica message is checked for its type and range before it is used:
  keys are non-empty bytes within ``max_key_bytes``, values bytes within
  ``max_value_bytes`` or None (a tombstone), node ids name nodes of the cluster, and a
  timestamp's wall is a non-negative 63-bit integer and its logical counter fits 32 bits
  (the wire's ``uint32``).
- ``check_drift`` refuses a timestamp whose wall is more than ``max_drift_us`` ahead of
  the receiver's physical clock: the hybrid clock observes every timestamp it accepts,
  so one far-future timestamp would push every later write of every node that saw it
  ahead (and a logical counter stuck at one wall value could overflow). Bounded drift
  keeps the clock within that bound of real time.
- Problems raise ``PeerInputError`` (a ``ValueError``) naming the field; the caller
  answers the message with an error and carries on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvstore.core.version import Record, Timestamp

MAX_WALL = (1 << 63) - 1
MAX_LOGICAL = (1 << 32) - 1


class PeerInputError(ValueError):
    pass


class ClockDriftError(PeerInputError):
    pass


@dataclass(frozen=True, slots=True)
class PeerLimits:
    max_key_bytes: int
    max_value_bytes: int
    nodes: frozenset[str]
    max_drift_us: int

    def key(self, raw: object) -> bytes:
        if not isinstance(raw, bytes) or not raw:
            raise PeerInputError(f"key must be non-empty bytes, not {type(raw).__name__}")
        if len(raw) > self.max_key_bytes:
            raise PeerInputError(f"key is {len(raw)} bytes; the limit is {self.max_key_bytes}")
        return raw

    def keys(self, raw: object, limit: int) -> list[bytes]:
        if not isinstance(raw, list) or len(raw) > limit:
            raise PeerInputError(f"keys must be a list of at most {limit}")
        return [self.key(k) for k in raw]

    def value(self, raw: object) -> bytes | None:
        if raw is None:
            return None
        if not isinstance(raw, bytes):
            raise PeerInputError(f"value must be bytes or nil, not {type(raw).__name__}")
        if len(raw) > self.max_value_bytes:
            raise PeerInputError(f"value is {len(raw)} bytes; the limit is {self.max_value_bytes}")
        return raw

    def node(self, raw: object, what: str = "node") -> str:
        if not isinstance(raw, str) or raw not in self.nodes:
            raise PeerInputError(f"{what} {raw!r} is not a node of this cluster")
        return raw

    def optional_node(self, raw: object, what: str) -> str | None:
        return None if raw is None else self.node(raw, what)

    def timestamp(self, wall: object, logical: object, node: object) -> Timestamp:
        if type(wall) is not int or not 0 <= wall <= MAX_WALL:
            raise PeerInputError(f"timestamp wall {wall!r} is not an integer in 0..2^63-1")
        if type(logical) is not int or not 0 <= logical <= MAX_LOGICAL:
            raise PeerInputError(f"timestamp logical {logical!r} is not an integer in 0..2^32-1")
        return Timestamp(wall, logical, self.node(node, "timestamp node"))

    def record(self, key: object, value: object, wall: object, logical: object,
               node: object) -> Record:  # fmt: skip
        return Record(self.key(key), self.value(value), self.timestamp(wall, logical, node))

    def check_drift(self, ts: Timestamp, physical_us: int) -> None:
        ahead = ts.wall - physical_us
        if ahead > self.max_drift_us:
            raise ClockDriftError(
                f"timestamp is {ahead / 1000:.0f} ms ahead of this node's clock "
                f"(max_clock_drift_ms={self.max_drift_us // 1000})"
            )


def fields(raw: object, count: int, what: str) -> Sequence[Any]:
    """``raw`` as a list of exactly ``count`` items, or PeerInputError."""
    if not isinstance(raw, list | tuple) or len(raw) != count:
        raise PeerInputError(f"{what} must be a list of {count} fields")
    return raw


def integer(raw: object, what: str, low: int, high: int) -> int:
    if type(raw) is not int or not low <= raw <= high:
        raise PeerInputError(f"{what} must be an integer in {low}..{high}, not {raw!r}")
    return raw
