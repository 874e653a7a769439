"""The storage engine interface every engine implements.

Contract (checked for every engine by ``tests/storage/contract.py``):
- ``apply`` is last-writer-wins: a record is stored only if its timestamp is newer than
  the stored one for that key (``kvstore.core.version.newer``); an older or equal record
  is a no-op that still succeeds. This makes replays (hints, repair) idempotent.
- When ``apply``/``apply_many`` returns, the records are durable (fsync'd for durable
  engines). Concurrent callers may share one commit (group commit).
- Tombstones are records with ``value=None``; ``get`` returns them (the caller decides
  what a tombstone means), ``get`` returns None only for a key never seen.
- ``purge_tombstones(t)`` durably removes every tombstone whose ``ts.wall < t`` and
  nothing else: after it, such a key reads as never seen (``get`` returns None). It is
  atomic with respect to concurrent ``apply`` calls (a newer value is never removed).
- ``drop(records)`` durably removes each given record if it is still the stored version
  of its key (same timestamp), and nothing else: a newer version applied before or at
  the same time is kept. It is how a node hands back ranges it no longer owns.
- Hints are records held for another node (``owner``); they live apart from the
  node's own data and are removed only by ``delete_hints``.
- ``digests`` (optional) is the engine's ``kvstore.core.digests.DigestIndex``: one
  digest per token bucket over every stored record (tombstones included, hints never),
  moved by every committed apply, drop and purge, and never by one that failed. It is
  exact whenever no write is in flight. ``entries_in`` lists the (key, timestamp,
  tombstone) of stored records by token range, so anti-entropy reads only the buckets
  that differ. Engines without an index return None (repair then scans).
- No method blocks the event loop: blocking work runs on threads the engine owns.
- After ``close`` every method raises ``EngineClosed``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from kvstore.core.digests import TOKEN_END, DigestIndex
from kvstore.core.merkle import Entry, entry_of
from kvstore.core.ring import token
from kvstore.core.version import Record


def check_ranges(ranges: object) -> list[tuple[int, int]]:
    """Token ranges as half-open [lo, hi) pairs of ints within the token space."""
    if not isinstance(ranges, (list, tuple)):
        raise TypeError("token ranges are a sequence of (lo, hi) pairs")
    out: list[tuple[int, int]] = []
    for pair in ranges:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError("a token range is a (lo, hi) pair")
        lo, hi = pair
        for bound in (lo, hi):
            if type(bound) is not int or not 0 <= bound <= TOKEN_END:
                raise ValueError(f"a token range bound must be an int in 0..2^64, not {bound!r}")
        out.append((lo, hi))
    return out


def in_ranges(key: bytes, ranges: list[tuple[int, int]]) -> bool:
    t = token(key)
    return any(lo <= t < hi for lo, hi in ranges)


class EngineClosed(RuntimeError):
    """The engine was closed; no further calls are accepted."""


@dataclass(frozen=True, slots=True)
class Hint:
    """A write held by a fallback replica on behalf of ``owner``."""

    hint_id: int  # engine-assigned, unique per engine
    owner: str  # node id of the primary replica the write was meant for
    record: Record
    stored_at_us: int  # when the fallback stored it (for the hint window)


class Engine(abc.ABC):
    """A replica's durable key -> Record map plus its hint store."""

    @abc.abstractmethod
    async def apply(self, record: Record) -> bool:
        """Store ``record`` if newer than the stored version; True if it was stored."""

    @abc.abstractmethod
    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        """``apply`` for many records in one commit; one bool per record, in order."""

    @abc.abstractmethod
    async def get(self, key: bytes) -> Record | None:
        """The stored version of ``key`` (tombstones included), or None."""

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        """``get`` for many keys, in order."""

    @abc.abstractmethod
    def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        """Every stored record with ``start <= key < end`` (end None: no bound), by key."""

    @property
    def digests(self) -> DigestIndex | None:
        """The incremental bucket digests this engine keeps, or None (it keeps none)."""
        return None

    async def entries_in(self, ranges: list[tuple[int, int]]) -> list[Entry]:
        """Entries of stored records whose key token is in one of ``ranges`` ([lo, hi)).

        This default scans everything; an engine with a token index reads only the ranges.
        """
        wanted = check_ranges(ranges)
        return [entry_of(r) async for r in self.scan() if in_ranges(r.key, wanted)]

    @abc.abstractmethod
    async def count(self) -> int:
        """How many records (tombstones included) are stored."""

    @abc.abstractmethod
    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        """Durably remove tombstones with ``ts.wall < older_than_wall_us``; how many."""

    @abc.abstractmethod
    async def drop(self, records: Sequence[Record]) -> int:
        """Durably remove each record that is still its key's stored version; how many."""

    @abc.abstractmethod
    async def add_hint(self, owner: str, record: Record, stored_at_us: int) -> int:
        """Durably store a hint for ``owner``; returns its hint id."""

    @abc.abstractmethod
    async def hints(self, owner: str | None = None, limit: int = 1000) -> list[Hint]:
        """Up to ``limit`` hints (for ``owner`` or for anyone), oldest first."""

    @abc.abstractmethod
    async def hinted(self, owner: str, key: bytes) -> Record | None:
        """The newest version of ``key`` among the hints held for ``owner`` (None: none).

        A fallback serving a sloppy read for ``owner`` answers with this as well as its
        own data: the hint is a write the fallback acknowledged on the owner's behalf.
        """

    @abc.abstractmethod
    async def delete_hints(self, hint_ids: Sequence[int]) -> None:
        """Durably remove the given hints (unknown ids are ignored)."""

    @abc.abstractmethod
    async def hint_counts(self) -> dict[str, int]:
        """Pending hints per owner."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release everything; idempotent."""
