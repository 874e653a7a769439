"""The durable default engine: SQLite (stdlib) in WAL mode with group commit.

This module is the facade implementing ``Engine``; the SQL and row conversion are in
``sqlite_schema`` and the writer and reader threads in ``group_commit`` (each with its own
rules). Here:
- When a write call returns, the transaction holding it has committed and its commit has
  been fsync'd. Every call is all or nothing, and nothing is acknowledged before its
  commit (``group_commit`` says which calls a failure takes down with it).
- Input is validated before it reaches a transaction (``check_record``), so bad input
  fails its own call only. Checks of one item run in the caller; checks of a whole
  sequence (``apply_many``, ``get_many``, ``delete_hints``) run on the engine thread, so a
  large call costs the event loop no more than a small one.
- Writes go to the one writer thread, reads to the one reader thread, and a read issued
  after a write returned sees that write.
- ``scan`` pages through key order (``key > last ORDER BY key LIMIT n``): memory stays
  bounded and no read transaction is held between pages. It is not a snapshot: a key
  written during the scan may or may not be seen, but every record yielded was stored.
- The queues are bounded: at most ``max_queued`` calls wait or run at once; one more is
  refused at once with ``Overloaded`` (nothing queued, nothing written), so a flood of
  work cannot grow memory without limit while the disk is slow.
- ``close`` refuses new calls (``EngineClosed``), lets both threads finish every job
  queued before it, closes the connections and joins the threads; it is idempotent.
- The digest index (``digest_depth``, on by default) is built from one scan while the
  engine opens, before any call can write, then moved only by the writer thread's
  committed changes (``group_commit``): so it is exact whenever no write is in flight.
- A read cache (``read_cache``, ``cache_bytes``, on by default) answers gets of recently
  written or read keys without the reader thread; the writer thread keeps it to what is
  committed, so a get answers the same through it as through SQLite. Large ``get_many``
  calls (anti-entropy's) bypass it, so their per-key work stays off the event loop.
- Constructing an engine opens files and may fsync; inside a running event loop use
  ``await SqliteEngine.open(path)``, which does that on a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from kvstore.core.digests import DEFAULT_DEPTH, DigestIndex
from kvstore.core.merkle import Entry
from kvstore.core.version import Record
from kvstore.errors import Overloaded
from kvstore.storage import sqlite_schema as sql
from kvstore.storage.base import Engine, EngineClosed, Hint, check_ranges
from kvstore.storage.group_commit import Effect, Job, Reader, Stop, Writer
from kvstore.storage.memory import check_int64, check_key, check_limit, check_record, check_text
from kvstore.storage.read_cache import CLEAR, ReadCache, Update
from kvstore.storage.sqlite_schema import SCHEMA_VERSION

__all__ = ["DEFAULT_CACHE_BYTES", "SCHEMA_VERSION", "SqliteEngine"]

# bench/storage.py times a bare loop of these statements against the engine.
_SCHEMA = sql.SCHEMA
_UPSERT = sql.UPSERT

DEFAULT_CACHE_BYTES = 16 << 20  # about 32,000 records of 100-byte values
CACHED_GET_MANY = 64  # a get_many of more keys than this skips the cache (bulk reads)


def _stored(records: list[Record], stored: list[bool]) -> list[Update]:
    return [(r.key, r) for r, kept in zip(records, stored, strict=True) if kept]


def _dropped(records: list[Record], _: object) -> list[Update]:
    return [(r.key, None) for r in records]  # dropped or not: not cached is always right


def _forget_all(_: object) -> object:
    return CLEAR


def _check_records(records: list[Record]) -> None:
    for record in records:
        check_record(record)


def _check_keys(keys: list[bytes]) -> None:
    for key in keys:
        check_key(key)


def _check_hint_ids(hint_ids: list[int]) -> None:
    for hint_id in hint_ids:
        check_int64("hint_id", hint_id)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqliteEngine(Engine):
    """A replica's store in one SQLite file (plus its ``-wal``/``-shm`` companions).

    ``SqliteEngine(path)`` opens synchronously (for scripts and threads);
    ``await SqliteEngine.open(path)`` opens without blocking the event loop. Either way,
    release it with ``await engine.close()``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_batch: int = 1024,
        scan_chunk: int = 512,
        busy_timeout_s: float = 10.0,
        max_queued: int = 65_536,
        digest_depth: int | None = DEFAULT_DEPTH,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if max_batch < 1 or scan_chunk < 1 or max_queued < 1:
            raise ValueError("max_batch, scan_chunk and max_queued must be >= 1")
        if cache_bytes < 0:
            raise ValueError("cache_bytes must be >= 0 (0: no read cache)")
        self.path = Path(path)
        self._max_queued = max_queued
        self._queued = 0
        self._scan_chunk = scan_chunk
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        wconn = sql.connect(self.path, busy_timeout_s)
        try:
            sql.init_schema(wconn, self.path)
            if created:
                # SQLite syncs the directory for the WAL it creates, not for the main file.
                _fsync_dir(self.path.parent)
            rconn = sql.connect(self.path, busy_timeout_s)
        except BaseException:
            wconn.close()
            raise
        try:
            rconn.execute("PRAGMA query_only = ON")
            self._index: DigestIndex | None = None
            if digest_depth is not None:
                index = DigestIndex(digest_depth)
                index.add_rows(sql.entry_rows(rconn))
                self._index = index
        except BaseException:
            rconn.close()
            wconn.close()
            raise

        # Looked up on ``self`` at every commit, not bound here: tests replace ``_commit``
        # on an open engine to hold the writer inside a commit or make one fail.
        self._writer = Writer(self.path, wconn, max_batch, lambda conn: self._commit(conn))
        self._reader = Reader(self.path, rconn)
        self._journal = self._writer.journal if self._index is not None else None
        if self._index is not None:
            self._writer.on_commit = self._index.apply
        self._cache = ReadCache(cache_bytes) if cache_bytes > 0 else None
        self._writer.cache = self._cache
        self._wq: SimpleQueue[Job | Stop] = self._writer.queue
        self._rq: SimpleQueue[Job | Stop] = self._reader.queue
        self._writer.start()
        self._reader.start()

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        max_batch: int = 1024,
        scan_chunk: int = 512,
        busy_timeout_s: float = 10.0,
        max_queued: int = 65_536,
        digest_depth: int | None = DEFAULT_DEPTH,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> SqliteEngine:
        """Open (creating if needed) on a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(
            partial(
                cls,
                path,
                max_batch=max_batch,
                scan_chunk=scan_chunk,
                busy_timeout_s=busy_timeout_s,
                max_queued=max_queued,
                digest_depth=digest_depth,
                cache_bytes=cache_bytes,
            )
        )

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def stats(self) -> dict[str, int]:
        """Counters for benchmarks and tests (read without locking: approximate while busy)."""
        cache = self._cache
        return {
            "commits": self._writer.commits,
            "write_jobs": self._writer.jobs,
            "read_batches": self._reader.batches,
            "read_jobs": self._reader.jobs,
            "cache_hits": 0 if cache is None else cache.hits,
            "cache_misses": 0 if cache is None else cache.misses,
            "cache_entries": 0 if cache is None else len(cache),
        }

    # -- the event-loop side ---------------------------------------------------------

    def _submit(
        self,
        queue: SimpleQueue[Job | Stop],
        fn: Callable[[sqlite3.Connection], object] | None,
        keys: list[bytes] | None = None,
        check: Callable[[], None] | None = None,
        effect: Effect | None = None,
    ) -> asyncio.Future[Any]:
        if self._closed:
            raise EngineClosed(f"engine for {self.path} is closed")
        if self._queued >= self._max_queued:
            raise Overloaded(
                f"engine for {self.path} has {self._queued} calls queued (the most it holds); "
                f"nothing was done"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued += 1
        future.add_done_callback(self._dequeued)
        queue.put(Job(fn, keys, check, loop, future, effect))
        return future

    @property
    def queued(self) -> int:
        """Calls waiting or running now (at most ``max_queued``)."""
        return self._queued

    def _dequeued(self, _: asyncio.Future[Any]) -> None:
        self._queued -= 1

    async def apply(self, record: Record) -> bool:
        check_record(record)
        batch = [record]
        stored: list[bool] = await self._submit(
            self._wq,
            partial(sql.apply_records, batch, self._journal),
            effect=partial(_stored, batch),
        )
        return stored[0]

    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        batch = list(records)
        if not batch:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return []
        stored: list[bool] = await self._submit(
            self._wq,
            partial(sql.apply_records, batch, self._journal),
            check=partial(_check_records, batch),
            effect=partial(_stored, batch),
        )
        return stored

    async def get(self, key: bytes) -> Record | None:
        check_key(key)
        cache = self._cache
        if cache is None:
            found: list[Record | None] = await self._submit(self._rq, None, [key])
            return found[0]
        if self._closed:
            raise EngineClosed(f"engine for {self.path} is closed")
        hit = cache.get(key)
        if hit is not None:
            return hit
        return (await self._read_through(cache, [key]))[0]

    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        wanted = list(keys)
        if not wanted:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return []
        cache = self._cache
        if cache is None or len(wanted) > CACHED_GET_MANY:
            found: list[Record | None] = await self._submit(
                self._rq, None, wanted, check=partial(_check_keys, wanted)
            )
            return found
        _check_keys(wanted)  # a few keys: checked here, as ``get`` does
        if self._closed:
            raise EngineClosed(f"engine for {self.path} is closed")
        found = cache.get_many(wanted)
        missed = [key for key, record in zip(wanted, found, strict=True) if record is None]
        if not missed:
            return found
        fetched = iter(await self._read_through(cache, missed))
        return [record if record is not None else next(fetched) for record in found]

    async def _read_through(self, cache: ReadCache, keys: list[bytes]) -> list[Record | None]:
        """Read keys the cache missed from SQLite, and fill the cache with them unless a
        commit began meanwhile (``ReadCache.fill``)."""
        token = cache.token()
        read: list[Record | None] = await self._submit(self._rq, None, keys)
        cache.fill(token, read)
        return read

    async def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        check_key(start)
        if end is not None:
            check_key(end)
        lo, inclusive = start, True
        while True:
            page: list[Record] = await self._submit(
                self._rq, partial(sql.scan_page, lo, inclusive, end, self._scan_chunk)
            )
            for record in page:
                if self._closed:
                    raise EngineClosed(f"engine for {self.path} is closed")
                yield record
            if len(page) < self._scan_chunk:
                return
            lo, inclusive = page[-1].key, False

    @property
    def digests(self) -> DigestIndex | None:
        return self._index

    async def entries_in(self, ranges: list[tuple[int, int]]) -> list[Entry]:
        wanted = check_ranges(ranges)
        found: list[Entry] = await self._submit(self._rq, partial(sql.entries_in, wanted))
        return found

    async def count(self) -> int:
        n: int = await self._submit(self._rq, sql.count)
        return n

    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        check_int64("older_than_wall_us", older_than_wall_us)
        purged: int = await self._submit(
            self._wq,
            partial(sql.purge_tombstones, older_than_wall_us, self._journal),
            effect=_forget_all,
        )
        return purged

    async def drop(self, records: Sequence[Record]) -> int:
        wanted = list(records)
        if not wanted:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return 0
        dropped: int = await self._submit(
            self._wq,
            partial(sql.drop_records, wanted, self._journal),
            check=partial(_check_records, wanted),
            effect=partial(_dropped, wanted),
        )
        return dropped

    async def add_hint(self, owner: str, record: Record, stored_at_us: int) -> int:
        check_text("owner", owner)
        check_record(record)
        check_int64("stored_at_us", stored_at_us)
        hint_id: int = await self._submit(
            self._wq, partial(sql.add_hint, owner, record, stored_at_us)
        )
        return hint_id

    async def hints(self, owner: str | None = None, limit: int = 1000) -> list[Hint]:
        if owner is not None:
            check_text("owner", owner)
        check_limit(limit)
        found: list[Hint] = await self._submit(self._rq, partial(sql.hints, owner, limit))
        return found

    async def hinted(self, owner: str, key: bytes) -> Record | None:
        check_text("owner", owner)
        check_key(key)
        found: Record | None = await self._submit(self._rq, partial(sql.hinted, owner, key))
        return found

    async def delete_hints(self, hint_ids: Sequence[int]) -> None:
        ids = list(hint_ids)
        if not ids:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return
        check = partial(_check_hint_ids, ids)
        await self._submit(self._wq, partial(sql.delete_hints, ids), check=check)

    async def hint_counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self._submit(self._rq, sql.hint_counts)
        return counts

    async def close(self) -> None:
        if self._closing is None:
            self._closed = True
            loop = asyncio.get_running_loop()
            writer_done: asyncio.Future[None] = loop.create_future()
            reader_done: asyncio.Future[None] = loop.create_future()
            self._wq.put(Stop(loop, writer_done))
            self._rq.put(Stop(loop, reader_done))
            self._closing = asyncio.ensure_future(
                self._join((self._writer.thread, writer_done), (self._reader.thread, reader_done))
            )
        await asyncio.shield(self._closing)

    @staticmethod
    async def _join(*threads: tuple[threading.Thread, asyncio.Future[None]]) -> None:
        for thread, done in threads:
            # A thread that died unexpectedly never resolves ``done``: stop waiting then.
            while not done.done() and thread.is_alive():
                await asyncio.wait([done], timeout=0.05)
            # Resolving ``done`` was the thread's last act, so this join does not wait.
            thread.join()
