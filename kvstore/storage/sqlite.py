"""The durable default engine: SQLite (stdlib) in WAL mode with group commit.

Rules and invariants:
- ``journal_mode=WAL`` and ``synchronous=FULL``: when a write call returns, the
  transaction holding it has committed and its commit has been fsync'd.
- One writer thread owns the only connection that writes. A write call queues a job and
  awaits a future; the writer takes every job queued so far (up to ``max_batch``), runs
  them in ONE transaction in queue order, commits once (one fsync) and resolves all their
  futures with one ``call_soon_threadsafe`` per event loop. Callers that arrive while a
  commit is in flight share the next one: group commit.
- Last-writer-wins is decided inside SQLite by a single UPSERT whose WHERE compares the
  row values ``(wall, logical, node)``: the same order as ``Timestamp`` tuples and
  ``newer``. Records run one after another inside the transaction, so two records for one
  key in one batch resolve as if applied in order, and ``rowcount`` says whether each
  record was stored.
- Every call is all or nothing, and nothing is acknowledged before its commit. If COMMIT
  fails, the batch is rolled back and every caller in it gets that exception. If a job
  fails while it runs (the database rejected it), the batch is rolled back and rerun with
  a savepoint per job, so only that job's caller fails. Either way the writer carries on.
- Input is validated before it reaches a transaction (``check_record``), so bad input
  fails its own call only. Checks of one item run in the caller; checks of a whole
  sequence (``apply_many``, ``get_many``, ``delete_hints``) run on the engine thread, so a
  large call costs the event loop no more than a small one.
- Reads run on one reader thread with its own (query-only) connection, batched the same
  way: all queued gets are merged into ``key IN (...)`` lookups, and each batch of reads
  runs in one read transaction. A read issued after a write returned sees that write.
- ``scan`` pages through key order (``key > last ORDER BY key LIMIT n``): memory stays
  bounded and no read transaction is held between pages. It is not a snapshot: a key
  written during the scan may or may not be seen, but every record yielded was stored.
- The queues are bounded: at most ``max_queued`` calls wait or run at once; one more is
  refused at once with ``Overloaded`` (nothing queued, nothing written), so a flood of
  work cannot grow memory without limit while the disk is slow.
- ``close`` refuses new calls (``EngineClosed``), lets both threads finish every job
  queued before it, closes the connections and joins the threads; it is idempotent.
- Constructing an engine opens files and may fsync; inside a running event loop use
  ``await SqliteEngine.open(path)``, which does that on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, cast

from kvstore.core.version import Record, Timestamp, newer
from kvstore.errors import Overloaded
from kvstore.storage.base import Engine, EngineClosed, Hint
from kvstore.storage.memory import check_int64, check_key, check_limit, check_record, check_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = (
    # WITHOUT ROWID clusters rows by key: point lookups and ordered scans touch one b-tree.
    # The timestamp stays in three columns so the UPSERT can compare it as a row value.
    """CREATE TABLE IF NOT EXISTS kv (
        key     BLOB    NOT NULL PRIMARY KEY,
        value   BLOB,
        wall    INTEGER NOT NULL,
        logical INTEGER NOT NULL,
        node    TEXT    NOT NULL
    ) WITHOUT ROWID""",
    # AUTOINCREMENT: a deleted hint id is never reused, even across restarts, so a late
    # delete_hints from a handoff that raced a crash can never remove a newer hint.
    """CREATE TABLE IF NOT EXISTS hints (
        hint_id      INTEGER PRIMARY KEY AUTOINCREMENT,
        owner        TEXT    NOT NULL,
        key          BLOB    NOT NULL,
        value        BLOB,
        tombstone    INTEGER NOT NULL CHECK (tombstone = (value IS NULL)),
        wall         INTEGER NOT NULL,
        logical      INTEGER NOT NULL,
        node         TEXT    NOT NULL,
        stored_at_us INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS hints_by_owner ON hints (owner, stored_at_us, hint_id)",
    "CREATE INDEX IF NOT EXISTS hints_by_age ON hints (stored_at_us, hint_id)",
    "CREATE INDEX IF NOT EXISTS hints_by_owner_key ON hints (owner, key)",
)

_UPSERT = """
INSERT INTO kv (key, value, wall, logical, node) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    value = excluded.value, wall = excluded.wall,
    logical = excluded.logical, node = excluded.node
WHERE (excluded.wall, excluded.logical, excluded.node) > (kv.wall, kv.logical, kv.node)
"""

_INSERT_HINT = """
INSERT INTO hints (owner, key, value, tombstone, wall, logical, node, stored_at_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

_HINT_COLUMNS = "hint_id, owner, key, value, tombstone, wall, logical, node, stored_at_us"

# Gets are looked up in IN lists of power-of-two sizes (padded with a repeated key) so the
# connection's statement cache holds a handful of statements instead of one per size.
_IN_MAX = 512

_MAX_READ_BATCH = 4096

Outcome = tuple["_Job", object, BaseException | None]


class _Job:
    """One queued call: ``fn`` runs on the engine thread; ``keys`` marks a batchable get;
    ``check`` validates the call's input on the engine thread, before any transaction."""

    __slots__ = ("check", "fn", "future", "keys", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], object] | None,
        keys: list[bytes] | None,
        check: Callable[[], None] | None,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.keys = keys
        self.check = check
        self.loop = loop
        self.future = future


def _checked(jobs: list[_Job]) -> list[_Job]:
    """Fail the jobs whose input is invalid; return the others."""
    if all(job.check is None for job in jobs):
        return jobs
    valid: list[_Job] = []
    failed: list[Outcome] = []
    for job in jobs:
        try:
            if job.check is not None:
                job.check()
        except Exception as exc:
            failed.append((job, None, exc))
        else:
            valid.append(job)
    _settle(failed)
    return valid


def _check_records(records: list[Record]) -> None:
    for record in records:
        check_record(record)


def _check_keys(keys: list[bytes]) -> None:
    for key in keys:
        check_key(key)


def _check_hint_ids(hint_ids: list[int]) -> None:
    for hint_id in hint_ids:
        check_int64("hint_id", hint_id)


class _Stop:
    """Queued by ``close``: everything before it is processed, then the thread exits."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future


def _resolve(outcomes: list[Outcome]) -> None:
    """Runs on the event loop: hand each caller its result or exception."""
    for job, result, exc in outcomes:
        future = job.future
        if future.done():  # the caller was cancelled; the write may still have happened
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _settle(outcomes: list[Outcome]) -> None:
    """Called on an engine thread: one wake-up per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting for these results any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, items)


def _finish(stop: _Stop) -> None:
    def done() -> None:
        if not stop.future.done():
            stop.future.set_result(None)

    with contextlib.suppress(RuntimeError):
        stop.loop.call_soon_threadsafe(done)


def _row_to_record(key: bytes, value: bytes | None, wall: int, logical: int, node: str) -> Record:
    return Record(key, value, Timestamp(wall, logical, node))


def _apply_records(records: list[Record], conn: sqlite3.Connection) -> list[bool]:
    cursor = conn.cursor()
    stored: list[bool] = []
    for record in records:
        ts = record.ts
        cursor.execute(_UPSERT, (record.key, record.value, ts.wall, ts.logical, ts.node))
        # The UPSERT changes a row only when it inserted or its WHERE (newer) held.
        stored.append(cursor.rowcount > 0)
    return stored


def _add_hint(owner: str, record: Record, stored_at_us: int, conn: sqlite3.Connection) -> int:
    ts = record.ts
    cursor = conn.execute(
        _INSERT_HINT,
        (
            owner,
            record.key,
            record.value,
            int(record.value is None),
            ts.wall,
            ts.logical,
            ts.node,
            stored_at_us,
        ),
    )
    hint_id = cursor.lastrowid
    assert hint_id is not None
    return hint_id


def _purge_tombstones(older_than_wall_us: int, conn: sqlite3.Connection) -> int:
    # One statement in the writer's transaction: no apply can interleave with it.
    cursor = conn.execute("DELETE FROM kv WHERE value IS NULL AND wall < ?", (older_than_wall_us,))
    return cursor.rowcount


def _delete_hints(hint_ids: list[int], conn: sqlite3.Connection) -> None:
    conn.executemany("DELETE FROM hints WHERE hint_id = ?", [(i,) for i in hint_ids])


def _select_in(size: int) -> str:
    marks = ",".join("?" * size)
    return f"SELECT key, value, wall, logical, node FROM kv WHERE key IN ({marks})"


def _lookup(keys: list[bytes], conn: sqlite3.Connection) -> dict[bytes, Record]:
    found: dict[bytes, Record] = {}
    for i in range(0, len(keys), _IN_MAX):
        chunk = keys[i : i + _IN_MAX]
        size = 1 << (len(chunk) - 1).bit_length()
        params = chunk + [chunk[-1]] * (size - len(chunk))
        # Iterating to the end resets the statement, so no read lock outlives the batch.
        for key, value, wall, logical, node in conn.execute(_select_in(size), params):
            found[key] = _row_to_record(key, value, wall, logical, node)
    return found


def _scan_page(
    lo: bytes, inclusive: bool, end: bytes | None, limit: int, conn: sqlite3.Connection
) -> list[Record]:
    op = ">=" if inclusive else ">"
    sql = f"SELECT key, value, wall, logical, node FROM kv WHERE key {op} ?"
    params: list[object] = [lo]
    if end is not None:
        sql += " AND key < ?"
        params.append(end)
    sql += " ORDER BY key LIMIT ?"
    params.append(limit)
    return [_row_to_record(*row) for row in conn.execute(sql, params)]


def _count(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM kv").fetchone()
    return cast(int, n)


def _hinted(owner: str, key: bytes, conn: sqlite3.Connection) -> Record | None:
    sql = "SELECT value, tombstone, wall, logical, node FROM hints WHERE owner = ? AND key = ?"
    best: Record | None = None
    for value, tombstone, wall, logical, node in conn.execute(sql, (owner, key)):
        best = newer(best, _row_to_record(key, None if tombstone else value, wall, logical, node))
    return best


def _hints(owner: str | None, limit: int, conn: sqlite3.Connection) -> list[Hint]:
    if owner is None:
        sql = f"SELECT {_HINT_COLUMNS} FROM hints ORDER BY stored_at_us, hint_id LIMIT ?"
        rows = conn.execute(sql, (limit,)).fetchall()
    else:
        sql = (
            f"SELECT {_HINT_COLUMNS} FROM hints WHERE owner = ?"
            " ORDER BY stored_at_us, hint_id LIMIT ?"
        )
        rows = conn.execute(sql, (owner, limit)).fetchall()
    return [
        Hint(
            hint_id,
            hint_owner,
            _row_to_record(key, None if tombstone else value, wall, logical, node),
            stored_at_us,
        )
        for hint_id, hint_owner, key, value, tombstone, wall, logical, node, stored_at_us in rows
    ]


def _hint_counts(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT owner, COUNT(*) FROM hints GROUP BY owner").fetchall()
    return {owner: n for owner, n in rows}


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
    ) -> None:
        if max_batch < 1 or scan_chunk < 1 or max_queued < 1:
            raise ValueError("max_batch, scan_chunk and max_queued must be >= 1")
        self.path = Path(path)
        self._max_queued = max_queued
        self._queued = 0
        self._max_batch = max_batch
        self._scan_chunk = scan_chunk
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._commits = 0
        self._write_jobs = 0
        self._read_batches = 0
        self._read_jobs = 0
        self._wq: SimpleQueue[_Job | _Stop] = SimpleQueue()
        self._rq: SimpleQueue[_Job | _Stop] = SimpleQueue()

        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._wconn = self._connect(busy_timeout_s)
        try:
            self._init_schema()
            if created:
                # SQLite syncs the directory for the WAL it creates, not for the main file.
                _fsync_dir(self.path.parent)
            self._rconn = self._connect(busy_timeout_s)
        except BaseException:
            self._wconn.close()
            raise
        try:
            self._rconn.execute("PRAGMA query_only = ON")
        except BaseException:
            self._rconn.close()
            self._wconn.close()
            raise

        name = self.path.name
        self._writer = threading.Thread(
            target=self._writer_main, name=f"kvstore-sqlite-writer:{name}", daemon=True
        )
        self._reader = threading.Thread(
            target=self._reader_main, name=f"kvstore-sqlite-reader:{name}", daemon=True
        )
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
            )
        )

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and ended explicitly, never implicitly.
        # check_same_thread=False: made here, then used only by the one thread that owns it.
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _init_schema(self) -> None:
        conn = self._wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: unknown schema version {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def stats(self) -> dict[str, int]:
        """Counters for benchmarks and tests (read without locking: approximate while busy)."""
        return {
            "commits": self._commits,
            "write_jobs": self._write_jobs,
            "read_batches": self._read_batches,
            "read_jobs": self._read_jobs,
        }

    # -- the event-loop side ---------------------------------------------------------

    def _submit(
        self,
        queue: SimpleQueue[_Job | _Stop],
        fn: Callable[[sqlite3.Connection], object] | None,
        keys: list[bytes] | None = None,
        check: Callable[[], None] | None = None,
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
        queue.put(_Job(fn, keys, check, loop, future))
        return future

    @property
    def queued(self) -> int:
        """Calls waiting or running now (at most ``max_queued``)."""
        return self._queued

    def _dequeued(self, _: asyncio.Future[Any]) -> None:
        self._queued -= 1

    async def apply(self, record: Record) -> bool:
        check_record(record)
        stored: list[bool] = await self._submit(self._wq, partial(_apply_records, [record]))
        return stored[0]

    async def apply_many(self, records: Sequence[Record]) -> list[bool]:
        batch = list(records)
        if not batch:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return []
        stored: list[bool] = await self._submit(
            self._wq, partial(_apply_records, batch), check=partial(_check_records, batch)
        )
        return stored

    async def get(self, key: bytes) -> Record | None:
        check_key(key)
        found: list[Record | None] = await self._submit(self._rq, None, [key])
        return found[0]

    async def get_many(self, keys: Sequence[bytes]) -> list[Record | None]:
        wanted = list(keys)
        if not wanted:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return []
        found: list[Record | None] = await self._submit(
            self._rq, None, wanted, check=partial(_check_keys, wanted)
        )
        return found

    async def scan(self, start: bytes = b"", end: bytes | None = None) -> AsyncIterator[Record]:
        check_key(start)
        if end is not None:
            check_key(end)
        lo, inclusive = start, True
        while True:
            page: list[Record] = await self._submit(
                self._rq, partial(_scan_page, lo, inclusive, end, self._scan_chunk)
            )
            for record in page:
                if self._closed:
                    raise EngineClosed(f"engine for {self.path} is closed")
                yield record
            if len(page) < self._scan_chunk:
                return
            lo, inclusive = page[-1].key, False

    async def count(self) -> int:
        n: int = await self._submit(self._rq, _count)
        return n

    async def purge_tombstones(self, older_than_wall_us: int) -> int:
        check_int64("older_than_wall_us", older_than_wall_us)
        purged: int = await self._submit(self._wq, partial(_purge_tombstones, older_than_wall_us))
        return purged

    async def add_hint(self, owner: str, record: Record, stored_at_us: int) -> int:
        check_text("owner", owner)
        check_record(record)
        check_int64("stored_at_us", stored_at_us)
        hint_id: int = await self._submit(self._wq, partial(_add_hint, owner, record, stored_at_us))
        return hint_id

    async def hints(self, owner: str | None = None, limit: int = 1000) -> list[Hint]:
        if owner is not None:
            check_text("owner", owner)
        check_limit(limit)
        found: list[Hint] = await self._submit(self._rq, partial(_hints, owner, limit))
        return found

    async def hinted(self, owner: str, key: bytes) -> Record | None:
        check_text("owner", owner)
        check_key(key)
        found: Record | None = await self._submit(self._rq, partial(_hinted, owner, key))
        return found

    async def delete_hints(self, hint_ids: Sequence[int]) -> None:
        ids = list(hint_ids)
        if not ids:
            if self._closed:
                raise EngineClosed(f"engine for {self.path} is closed")
            return
        check = partial(_check_hint_ids, ids)
        await self._submit(self._wq, partial(_delete_hints, ids), check=check)

    async def hint_counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self._submit(self._rq, _hint_counts)
        return counts

    async def close(self) -> None:
        if self._closing is None:
            self._closed = True
            loop = asyncio.get_running_loop()
            writer_done: asyncio.Future[None] = loop.create_future()
            reader_done: asyncio.Future[None] = loop.create_future()
            self._wq.put(_Stop(loop, writer_done))
            self._rq.put(_Stop(loop, reader_done))
            self._closing = asyncio.ensure_future(
                self._join((self._writer, writer_done), (self._reader, reader_done))
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

    # -- the writer thread -----------------------------------------------------------

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")

    def _writer_main(self) -> None:
        self._thread_main(self._wq, self._wconn, self._max_batch, self._write_batch)

    def _reader_main(self) -> None:
        self._thread_main(self._rq, self._rconn, _MAX_READ_BATCH, self._read_batch)

    def _thread_main(
        self,
        queue: SimpleQueue[_Job | _Stop],
        conn: sqlite3.Connection,
        limit: int,
        run: Callable[[sqlite3.Connection, list[_Job]], None],
    ) -> None:
        stop: _Stop | None = None
        try:
            while stop is None:
                item = queue.get()
                if isinstance(item, _Stop):
                    stop = item
                    break
                batch: list[_Job] = [item]
                while len(batch) < limit:
                    try:
                        more = queue.get_nowait()
                    except Empty:
                        break
                    if isinstance(more, _Stop):
                        stop = more
                        break
                    batch.append(more)
                try:
                    run(conn, batch)
                except Exception as exc:
                    # ``run`` settles its own errors; this is a bug, but callers must not hang.
                    log.exception("storage thread: unexpected error")
                    _settle([(job, None, exc) for job in batch])
        finally:
            self._drain(queue, conn, stop)

    def _drain(
        self, queue: SimpleQueue[_Job | _Stop], conn: sqlite3.Connection, stop: _Stop | None
    ) -> None:
        leftovers: list[Outcome] = []
        stops: list[_Stop] = [] if stop is None else [stop]
        while True:
            try:
                item = queue.get_nowait()
            except Empty:
                break
            if isinstance(item, _Stop):
                stops.append(item)
            else:
                # Raced with close(): queued after the stop marker, so never run.
                leftovers.append((item, None, EngineClosed(f"engine for {self.path} closed")))
        _settle(leftovers)
        try:
            conn.close()
        except sqlite3.Error:
            log.exception("closing %s failed", self.path)
        for s in stops:
            _finish(s)

    def _write_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        jobs = _checked(jobs)
        if not jobs:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            _settle([(job, None, exc) for job in jobs])
            return
        results: list[object] = []
        try:
            for job in jobs:
                assert job.fn is not None
                results.append(job.fn(conn))
        except Exception as exc:
            self._rollback(conn)
            if len(jobs) == 1:
                _settle([(jobs[0], None, exc)])
            else:
                self._write_isolated(conn, jobs)
            return
        try:
            self._commit(conn)
        except Exception as exc:
            self._rollback(conn)
            _settle([(job, None, exc) for job in jobs])
            return
        self._commits += 1
        self._write_jobs += len(jobs)
        _settle([(job, result, None) for job, result in zip(jobs, results, strict=True)])

    def _write_isolated(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Rerun a batch in which some job failed, a savepoint per job, so it fails alone."""
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                assert job.fn is not None
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            self._commit(conn)
        except Exception as exc:
            self._rollback(conn)
            done = {id(job) for job, _, _ in outcomes}
            outcomes = [(job, None, e if e is not None else exc) for job, _, e in outcomes]
            outcomes += [(job, None, exc) for job in jobs if id(job) not in done]
        else:
            self._commits += 1
            self._write_jobs += len(jobs)
        _settle(outcomes)

    # -- the reader thread -----------------------------------------------------------

    def _read_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        jobs = _checked(jobs)
        if not jobs:
            return
        outcomes: list[Outcome] = []
        try:
            # One read transaction: every read in the batch sees the same snapshot, and
            # SQLite takes its WAL read lock once instead of once per statement.
            conn.execute("BEGIN")
        except Exception as exc:
            _settle([(job, None, exc) for job in jobs])
            return
        try:
            gets = [job for job in jobs if job.keys is not None]
            if gets:
                keys = list(dict.fromkeys(k for job in gets for k in cast(list[bytes], job.keys)))
                try:
                    found = _lookup(keys, conn)
                except Exception as exc:
                    outcomes += [(job, None, exc) for job in gets]
                else:
                    outcomes += [
                        (job, [found.get(k) for k in cast(list[bytes], job.keys)], None)
                        for job in gets
                    ]
            for job in jobs:
                if job.fn is None:
                    continue
                try:
                    outcomes.append((job, job.fn(conn), None))
                except Exception as exc:
                    outcomes.append((job, None, exc))
        finally:
            self._rollback(conn)
        self._read_batches += 1
        self._read_jobs += len(jobs)
        _settle(outcomes)
