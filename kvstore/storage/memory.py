"""An in-memory engine for tests; it keeps the full ``Engine`` contract but nothing survives.

Rules and invariants:
- Last-writer-wins goes through ``kvstore.core.version.newer`` and nothing else, so this
  engine is the reference the durable engines are checked against.
- ``check_record`` holds the input rules every engine enforces before anything is stored
  (bytes keys, bytes-or-None values, timestamps that fit signed 64-bit integers and a
  UTF-8-encodable node id): a record one engine accepts, every engine accepts.
- Hints are listed oldest first: by ``stored_at_us``, then by hint id (insertion order).
- Nothing here awaits, so each call is atomic with respect to other coroutines.
- The digest index moves in the same step as the dict, so it is always exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from kvstore.core.digests import DigestIndex
from kvstore.core.merkle import Entry, entry_of
from kvstore.core.version import Record, Timestamp, newer
from kvstore.storage.base import Engine, EngineClosed, Hint, check_ranges, in_ranges

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_int64(name: str, value: object) -> None:
    """Reject what a SQLite INTEGER column cannot hold (bools are not integers here)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name}={value} does not fit in a signed 64-bit integer")


def check_key(key: object) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"keys are bytes, not {type(key).__name__}")


def check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.isascii():
        # Lone surrogates cannot be stored as TEXT; fail here, before any engine work.
        value.encode("utf-8")


def check_record(record: object) -> None:
    """Raise TypeError/ValueError unless every engine can store ``record`` faithfully."""
    if not isinstance(record, Record):
        raise TypeError(f"expected a Record, not {type(record).__name__}")
    check_key(record.key)
    if record.value is not None and not isinstance(record.value, bytes):
        raise TypeError(f"values are bytes or None, not {type(record.value).__name__}")
    ts = record.ts
    if not isinstance(ts, Timestamp):
        raise TypeError(f"expected a Timestamp, not {type(ts).__name__}")
    check_int64("ts.wall", ts.wall)
    check_int64("ts.logical", ts.logical)
    check_text("ts.node", ts.node)


def check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")


class MemoryEngine(Engine):
    """A dict of records and a dict of hints; ``MemoryEngine()`` is ready to use."""

    # A test or simulated store is small: 2^16 buckets (1 MB) are plenty, and every
    # simulated node keeps one. Exchanges sum to the same depths either way.
    def __init__(self, digest_depth: int | None = 16) -> None:
        self._data: dict[bytes, Record] = {}
        self._index = None if digest_depth is None else DigestIndex(digest_depth)
        self._hints: dict[int, Hint] = {}
        self._next_hint_id = 1
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("engine is closed")

    def _store(self, record: Record) -> bool:
        current = self._data.get(record.key)
        # ``newer`` lets the stored version win a tie, so an equal record is a no-op.
        if newer(current, record) is current:
            return False
        self._data[record.key] = record
        if self._index is not None:
            self._index.change(record.key, None if current is None else entry_of(current),
                               entry_of(record))  # fmt: skip
        return True

    def _remove(self, key: bytes) -> None:
        record = self._data.pop(key)
        if self._index is not None:
            self._index.change(key, entry_of(record), None)

    @property
    def digests(self) -> DigestIndex | None:
        return self._index

    async def entries_in(self, ranges: list[tuple[int, int]]) -> list[Entry]:
        self._check_open()
        wanted = check_ranges(ranges)
        return [entry_of(r) for key, r in self._data.items() if in_ranges(key, wanted)]

    async def apply(self, record: Record) -> bool:
        self._check_open()
        check_record(record)
        return self._store(record)

    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        self._check_open()
        batch = list(records)
        # Validate everything first: a bad record must not leave the batch half-applied.
        for record in batch:
            check_record(record)
        return [self._store(record) for record in batch]

    async def get(self, key: bytes) -> Record | None:
        self._check_open()
        check_key(key)
        return self._data.get(key)

    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        self._check_open()
        wanted = list(keys)
        for key in wanted:
            check_key(key)
        return [self._data.get(key) for key in wanted]

    async def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        self._check_open()
        check_key(start)
        if end is not None:
            check_key(end)
        keys = sorted(k for k in self._data if k >= start and (end is None or k < end))
        for key in keys:
            self._check_open()
            record = self._data.get(key)
            if record is not None:
                yield record

    async def count(self) -> int:
        self._check_open()
        return len(self._data)

    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        self._check_open()
        check_int64("older_than_wall_us", older_than_wall_us)
        doomed = [
            key
            for key, record in self._data.items()
            if record.value is None and record.ts.wall < older_than_wall_us
        ]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    async def drop(self, records: Sequence[Record]) -> int:
        self._check_open()
        wanted = list(records)
        for record in wanted:
            check_record(record)
        dropped = 0
        for record in wanted:
            held = self._data.get(record.key)
            if held is not None and held.ts == record.ts:
                self._remove(record.key)
                dropped += 1
        return dropped

    async def add_hint(self, owner: str, record: Record, stored_at_us: int) -> int:
        self._check_open()
        check_text("owner", owner)
        check_record(record)
        check_int64("stored_at_us", stored_at_us)
        hint_id = self._next_hint_id
        self._next_hint_id += 1
        self._hints[hint_id] = Hint(hint_id, owner, record, stored_at_us)
        return hint_id

    async def hints(self, owner: str | None = None, limit: int = 1000) -> list[Hint]:
        self._check_open()
        check_limit(limit)
        found = [h for h in self._hints.values() if owner is None or h.owner == owner]
        found.sort(key=lambda h: (h.stored_at_us, h.hint_id))
        return found[:limit]

    async def hinted(self, owner: str, key: bytes) -> Record | None:
        self._check_open()
        check_text("owner", owner)
        check_key(key)
        best: Record | None = None
        for hint in self._hints.values():
            if hint.owner == owner and hint.record.key == key:
                best = newer(best, hint.record)
        return best

    async def delete_hints(self, hint_ids: Sequence[int]) -> None:
        self._check_open()
        ids = list(hint_ids)
        for hint_id in ids:
            check_int64("hint_id", hint_id)
        for hint_id in ids:
            self._hints.pop(hint_id, None)

    async def hint_counts(self) -> dict[str, int]:
        self._check_open()
        counts: dict[str, int] = {}
        for hint in self._hints.values():
            counts[hint.owner] = counts.get(hint.owner, 0) + 1
        return counts

    async def close(self) -> None:
        self._closed = True
