"""The lying disk: a fault at the storage seam, wrapped around any engine.

Rules and invariants:
- While ``lying()`` says so, writes of the node's own data are acknowledged at once and
  held in memory (``volatile``), not passed to the engine: a crash (the process and
  this wrapper gone) loses them, though they were acknowledged. That is the fault.
- Reads, scans and counts see the held writes (the node believes its disk), merged
  with the engine's by last-writer-wins, so the node behaves as it would on a disk that
  kept them until the crash finds it out.
- ``stop_lying`` writes what is held to the engine for real (the disk is honest again).
- Hints are not affected (the fault is about the node's own data, as in the harness's
  lying-disk nemesis); every other call goes straight to the engine.
- While it holds writes it offers no digest index (the engine's would miss them), so
  anti-entropy falls back to scanning, which sees them.
- When not lying, this is the engine: the storage contract holds for it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from kvstore.core.digests import DigestIndex
from kvstore.core.merkle import Entry
from kvstore.core.version import Record, newer
from kvstore.storage.base import Engine, Hint
from kvstore.storage.memory import check_record


class LyingDisk(Engine):
    def __init__(self, inner: Engine, lying: Callable[[], bool]) -> None:
        self.inner = inner
        self.lying = lying
        self.volatile: dict[bytes, Record] = {}
        self.held_writes = 0  # acknowledged without being written, since start

    def _hold(self, record: Record) -> bool:
        check_record(record)
        held = self.volatile.get(record.key)
        if held is not None and newer(held, record) is held:
            return False
        self.volatile[record.key] = record
        self.held_writes += 1
        return True

    async def apply(self, record: Record) -> bool:
        if self.lying():
            return self._hold(record)
        return await self.inner.apply(record)

    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        if self.lying():
            return [self._hold(record) for record in records]
        return await self.inner.apply_many(records)

    async def get(self, key: bytes) -> Record | None:
        stored = await self.inner.get(key)
        return newer(stored, self.volatile.get(key)) if self.volatile else stored

    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        stored = await self.inner.get_many(keys)
        if not self.volatile:
            return stored
        return [newer(r, self.volatile.get(k)) for r, k in zip(stored, keys, strict=True)]

    async def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        if not self.volatile:
            async for record in self.inner.scan(start, end):
                yield record
            return
        merged = {r.key: r async for r in self.inner.scan(start, end)}
        for key, record in self.volatile.items():
            if key >= start and (end is None or key < end):
                merged[key] = newer(merged.get(key), record) or record
        for key in sorted(merged):
            yield merged[key]

    async def count(self) -> int:
        if not self.volatile:
            return await self.inner.count()
        return len([r async for r in self.scan()])

    @property
    def digests(self) -> DigestIndex | None:
        return None if self.volatile else self.inner.digests

    async def entries_in(self, ranges: list[tuple[int, int]]) -> list[Entry]:
        if not self.volatile:
            return await self.inner.entries_in(ranges)
        return await super().entries_in(ranges)  # the default: a scan, merged with held

    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        return await self.inner.purge_tombstones(older_than_wall_us)

    async def drop(self, records: Sequence[Record]) -> int:
        wanted = list(records)
        for record in wanted:
            check_record(record)
        held = {r for r in wanted if (v := self.volatile.get(r.key)) is not None and v.ts == r.ts}
        for record in held:
            del self.volatile[record.key]
        return len(held) + await self.inner.drop([r for r in wanted if r not in held])

    async def add_hint(self, owner: str, record: Record, stored_at_us: int) -> int:
        return await self.inner.add_hint(owner, record, stored_at_us)

    async def hints(self, owner: str | None = None, limit: int = 1000) -> list[Hint]:
        return await self.inner.hints(owner, limit)

    async def hinted(self, owner: str, key: bytes) -> Record | None:
        return await self.inner.hinted(owner, key)

    async def delete_hints(self, hint_ids: Sequence[int]) -> None:
        await self.inner.delete_hints(hint_ids)

    async def hint_counts(self) -> dict[str, int]:
        return await self.inner.hint_counts()

    async def stop_lying(self) -> None:
        """What was held is written for real; later writes go to the engine."""
        held, self.volatile = list(self.volatile.values()), {}
        if held:
            await self.inner.apply_many(held)

    async def close(self) -> None:
        self.volatile = {}  # what a lying disk held dies with the process
        await self.inner.close()
