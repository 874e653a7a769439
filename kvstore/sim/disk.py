"""A simulated disk: what survives a node's crash, and what a lying disk loses.

Rules and invariants:
- ``SimDisk`` is the durable medium; it outlives every ``Node`` built on it. What it
  holds is a ``MemoryEngine`` (the reference last-writer-wins engine), so the sim
  disk stores exactly what any engine would.
- ``SimEngine`` is one node incarnation's engine on that disk. A write is durable only
  when its simulated fsync finishes: writes wait for the disk's next sync, at most
  ``fsync_s`` of virtual time away and shared by every write waiting (group commit, as
  the SQLite engine does), then go to the disk and return. A crash in between (the
  node's tasks dropped) loses the write, which was never acknowledged: nothing
  acknowledged is lost.
- The lying disk is a wrapper state, not node logic: while ``disk.lying``, writes of the
  node's own data are acknowledged at once and held in ``volatile`` (reads see them);
  ``crash()`` drops them (the lie found out), ``stop_lying()`` writes them for real.
- Every method keeps the ``Engine`` contract (``tests/storage/contract.py`` runs on
  this engine too), including ``EngineClosed`` after ``close``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from kvstore.core.version import Record, newer
from kvstore.storage.base import Engine, EngineClosed, Hint
from kvstore.storage.memory import MemoryEngine, check_record

FSYNC_S = 0.0005  # half a millisecond of virtual time per commit (an SSD's fsync)


class SimDisk:
    def __init__(self, fsync_s: float = FSYNC_S) -> None:
        self.store = MemoryEngine()
        self.fsync_s = fsync_s
        self.lying = False
        self.volatile: dict[bytes, Record] = {}
        self.lost_on_crash = 0  # acknowledged writes a crash of a lying disk lost

    def crash(self) -> None:
        """Power cut: what was only in memory is gone."""
        self.lost_on_crash += len(self.volatile)
        self.volatile = {}

    async def stop_lying(self) -> None:
        self.lying = False
        held, self.volatile = list(self.volatile.values()), {}
        if held:
            await self.store.apply_many(held)


class SimEngine(Engine):
    def __init__(self, disk: SimDisk) -> None:
        self.disk = disk
        self._closed = False
        self._sync: asyncio.Future[None] | None = None  # the next group commit

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the engine is closed")

    async def _fsync(self) -> None:
        self._check_open()
        if self.disk.fsync_s > 0:
            sync = self._sync
            if sync is None or sync.done():
                sync = self._sync = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_later(self.disk.fsync_s, _synced, sync)
            await sync
        self._check_open()

    def _lie(self, record: Record) -> bool:
        held = self.disk.volatile.get(record.key)
        if held is not None and newer(held, record) is held:
            return False
        self.disk.volatile[record.key] = record
        return True

    async def apply(self, record: Record) -> bool:
        return (await self.apply_many([record]))[0]

    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        self._check_open()
        for record in records:
            check_record(record)
        if self.disk.lying:
            return [self._lie(record) for record in records]
        await self._fsync()
        return await self.disk.store.apply_many(records)

    async def get(self, key: bytes) -> Record | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        self._check_open()
        stored = await self.disk.store.get_many(keys)
        if not self.disk.volatile:
            return stored
        return [newer(r, self.disk.volatile.get(k)) for r, k in zip(stored, keys, strict=True)]

    async def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        self._check_open()
        merged = {r.key: r async for r in self.disk.store.scan(start, end)}
        for key, record in self.disk.volatile.items():
            if key >= start and (end is None or key < end):
                merged[key] = newer(merged.get(key), record) or record
        for key in sorted(merged):
            yield merged[key]

    async def count(self) -> int:
        self._check_open()
        if not self.disk.volatile:
            return await self.disk.store.count()
        return len([r async for r in self.scan()])

    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        await self._fsync()
        return await self.disk.store.purge_tombstones(older_than_wall_us)

    async def add_hint(self, owner: str, record: Record, stored_at_us: int) -> int:
        check_record(record)
        await self._fsync()
        return await self.disk.store.add_hint(owner, record, stored_at_us)

    async def hints(self, owner: str | None = None, limit: int = 1000) -> list[Hint]:
        self._check_open()
        return await self.disk.store.hints(owner, limit)

    async def hinted(self, owner: str, key: bytes) -> Record | None:
        self._check_open()
        return await self.disk.store.hinted(owner, key)

    async def delete_hints(self, hint_ids: Sequence[int]) -> None:
        await self._fsync()
        await self.disk.store.delete_hints(hint_ids)

    async def hint_counts(self) -> dict[str, int]:
        self._check_open()
        return await self.disk.store.hint_counts()

    async def close(self) -> None:
        self._closed = True  # the disk stays: a restarted node opens it again


def _synced(sync: asyncio.Future[None]) -> None:
    if not sync.done():
        sync.set_result(None)
