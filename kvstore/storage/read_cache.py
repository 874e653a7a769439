"""A bounded cache of the SQLite engine's committed records: hot reads skip the reader thread.

A read through SQLite costs two thread hand-offs (the event loop to the reader thread and
back); a hit here costs a dictionary lookup. Rules and invariants:
- The cache holds only committed versions, and only versions that are still stored. The
  writer thread changes it after COMMIT succeeded and before any caller of that commit is
  told (``begin``/``end`` around COMMIT); a rolled-back job changes nothing, and a failed
  COMMIT empties the cache (a miss is always right: SQLite is the truth).
- A hit is what a read through SQLite would return at that moment, or, while a commit is
  between COMMIT and ``end``, the version that commit replaces: its writes are not yet
  acknowledged, and no read can have seen them through the cache. (Reads that bypass the
  cache, scans and bulk ``get_many``, can see them that moment earlier: still writes no
  caller was told of.)
- A read that missed fills the cache with what it read only if no commit began since the
  read was issued (``token`` then ``fill``, a sequence number that is odd while a commit
  is under way). Otherwise a slow read could install a version older than one a commit
  stored meanwhile, and this replica would go back in time.
- Bounded in bytes (key, value and a fixed per-entry overhead): the entries inserted
  longest ago are evicted first; a key stored again moves to the newest end.
- Thread-safe: one lock, held only for dictionary work, never across I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kvstore.core.version import Record

__all__ = ["CLEAR", "ENTRY_OVERHEAD", "ReadCache", "Update"]

# What a cached Record costs beyond its key and value bytes, as a node holds it (every
# field decoded from a msgpack frame, so its own objects): the Record, its Timestamp with
# its int and str, the two bytes objects' headers and the dict slot. tracemalloc, 45,000
# records of 100-byte values filled through ``end``: 394 bytes each.
ENTRY_OVERHEAD = 400

# One change a commit made: the key now stores this record, or (None) stores nothing
# the cache may keep (dropped, or not known).
Update = tuple[bytes, Record | None]


class _Clear:
    """A commit whose effect on single keys is not listed (a purge): forget everything."""


CLEAR = _Clear()


def _cost(record: Record) -> int:
    return len(record.key) + (0 if record.value is None else len(record.value)) + ENTRY_OVERHEAD


class ReadCache:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[bytes, Record] = {}
        self._bytes = 0
        self._seq = 0  # odd while a commit is between COMMIT and ``end``
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    # -- the event-loop side -----------------------------------------------------------

    def get(self, key: bytes) -> Record | None:
        """The cached version of ``key``, or None (not cached: read it from SQLite)."""
        with self._lock:
            found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        with self._lock:
            found = [self._entries.get(key) for key in keys]
        hits = sum(1 for record in found if record is not None)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def token(self) -> int:
        """Taken when a read that missed is issued; ``fill`` needs it."""
        with self._lock:
            return self._seq

    def fill(self, token: int, records: Sequence[Record | None]) -> None:
        """Cache what a read issued at ``token`` found, if no commit began since."""
        with self._lock:
            if token != self._seq or token & 1:
                return
            for record in records:
                if record is not None and record.key not in self._entries:
                    self._put(record)

    # -- the writer-thread side ----------------------------------------------------------

    def begin(self) -> None:
        """Called just before COMMIT: reads issued from now on do not fill."""
        with self._lock:
            self._seq += 1
            assert self._seq & 1, "begin without end"

    def end(self, updates: Sequence[Update] | _Clear) -> None:
        """Called after COMMIT (succeeded, or failed: ``CLEAR``), before callers are told."""
        with self._lock:
            if isinstance(updates, _Clear):
                self._entries.clear()
                self._bytes = 0
            else:
                for key, record in updates:
                    self._drop(key)
                    if record is not None:
                        self._put(record)
            self._seq += 1

    # -- under the lock ----------------------------------------------------------------------

    def _drop(self, key: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _cost(old)

    def _put(self, record: Record) -> None:
        cost = _cost(record)
        if cost > self.max_bytes:
            return
        entries = self._entries
        entries[record.key] = record
        self._bytes += cost
        while self._bytes > self.max_bytes:
            oldest = next(iter(entries))
            self._bytes -= _cost(entries.pop(oldest))
