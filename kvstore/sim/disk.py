"""A simulated disk: what survives a node's crash.

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
- The lying disk is not here: it is the production fault wrapper
  (``kvstore.storage.lying``) around this engine, in the node's memory, so a crash
  loses what it held as it does on real processes.
- Every method keeps the ``Engine`` contract (``tests/storage/contract.py`` runs on
  this engine too), including ``EngineClosed`` after ``close``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from kvstore.core.digests import DigestIndex
from kvstore.core.merkle import Entry
from kvstore.core.version import Record
from kvstore.storage.base import Engine, EngineClosed, Hint
from kvstore.storage.memory import MemoryEngine, check_record

FSYNC_S = 0.0005  # half a millisecond of virtual time per commit (an SSD's fsync)


class SimDisk:
    def __init__(self, fsync_s: float = FSYNC_S) -> None:
        self.store = MemoryEngine()
        self.fsync_s = fsync_s


class SimEngine(Engine):
    def __init__(self, disk: SimDisk) -> None:
        self.disk = disk
        self._closed = False
        self._waiting: list[asyncio.Future[None]] = []  # writes in the next group commit

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the engine is closed")

    async def _fsync(self) -> None:
        self._check_open()
        if self.disk.fsync_s > 0:
            loop = asyncio.get_running_loop()
            # one future per waiter (a cancelled caller must not cancel the others'),
            # one timer per commit
            waiter: asyncio.Future[None] = loop.create_future()
            if not self._waiting:
                loop.call_later(self.disk.fsync_s, self._commit)
            self._waiting.append(waiter)
            await waiter
        self._check_open()

    def _commit(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def apply(self, record: Record) -> bool:
        return (await self.apply_many([record]))[0]

    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        self._check_open()
        for record in records:
            check_record(record)
        await self._fsync()
        return await self.disk.store.apply_many(records)

    async def get(self, key: bytes) -> Record | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        self._check_open()
        return await self.disk.store.get_many(keys)

    async def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        self._check_open()
        async for record in self.disk.store.scan(start, end):
            self._check_open()
            yield record

    async def count(self) -> int:
        self._check_open()
        return await self.disk.store.count()

    @property
    def digests(self) -> DigestIndex | None:
        return self.disk.store.digests  # the disk's: what survives a crash

    async def entries_in(self, ranges: list[tuple[int, int]]) -> list[Entry]:
        self._check_open()
        return await self.disk.store.entries_in(ranges)

    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        await self._fsync()
        return await self.disk.store.purge_tombstones(older_than_wall_us)

    async def drop(self, records: Sequence[Record]) -> int:
        self._check_open()
        for record in records:
            check_record(record)
        await self._fsync()
        return await self.disk.store.drop(records)

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
        # writes waiting for the commit finish first (a clean close loses nothing);
        # the disk stays: a restarted node opens it again
        while self._waiting:
            await asyncio.gather(*self._waiting, return_exceptions=True)
            await asyncio.sleep(0)
        self._closed = True
