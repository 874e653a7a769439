"""The SQLite engine's two threads: a group-commit writer and a batching reader.

Rules and invariants:
- Each thread owns one connection and a queue; a call is a ``Job`` on that queue whose
  caller awaits its future. The thread takes every job queued so far (up to its batch
  limit) and runs them as one batch, in queue order.
- The writer owns the only connection that writes. It runs a batch in ONE transaction,
  commits once (one fsync) and resolves all its futures with one ``call_soon_threadsafe``
  per event loop. Callers that arrive while a commit is in flight share the next one:
  group commit.
- Nothing is acknowledged before its commit. If COMMIT fails, the batch is rolled back and
  every caller in it gets that exception. If a job fails while it runs (the database
  rejected it), the batch is rolled back and rerun with a savepoint per job, so only that
  job's caller fails. Either way the writer carries on.
- A job's ``check`` (the input checks of a whole sequence) runs on the thread before any
  transaction: a job that fails it fails alone and never runs, so a large call costs the
  event loop no more than a small one.
- The reader owns a query-only connection. All queued gets are merged into ``key IN (...)``
  lookups, and each batch of reads runs in one read transaction, rolled back after.
- A ``Stop`` ends its thread after every job queued before it; a job queued after it fails
  with ``EngineClosed``. The thread then closes its connection, and resolving the stop's
  future is its last act.
- A caller that was cancelled has its future left alone: its write may still happen.
- The writer's ``journal`` collects the changes its jobs make to ``kv`` (see
  ``sqlite_schema``); ``on_commit`` receives them on the writer thread after COMMIT
  succeeded, before any caller is told, and a rolled-back job's changes are discarded
  with it. So the digest index follows exactly what is durable.
- The writer's ``cache`` (``read_cache``), when there is one, is told just before COMMIT
  (``begin``) and after it (``end``, with each committed job's ``effect`` on it, or
  ``CLEAR`` when COMMIT failed), before any caller is told: so it too holds only what is
  durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, cast

from kvstore.storage.base import EngineClosed
from kvstore.storage.read_cache import CLEAR, ReadCache, Update
from kvstore.storage.sqlite_schema import lookup

# The engine's logger name, as before this module was split out of it.
log = logging.getLogger("kvstore.storage.sqlite")

MAX_READ_BATCH = 4096

Outcome = tuple["Job", object, BaseException | None]


# a write job's result -> its changes for the read cache (a list of Update, or CLEAR)
Effect = Callable[[Any], object]


class Job:
    """One queued call: ``fn`` runs on the engine thread; ``keys`` marks a batchable get;
    ``check`` validates the call's input on the engine thread, before any transaction;
    ``effect`` maps a write's result to what it changed for the read cache (``CLEAR``:
    not known key by key)."""

    __slots__ = ("check", "effect", "fn", "future", "keys", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], object] | None,
        keys: list[bytes] | None,
        check: Callable[[], None] | None,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        effect: Effect | None = None,
    ) -> None:
        self.fn = fn
        self.keys = keys
        self.check = check
        self.loop = loop
        self.future = future
        self.effect = effect


class Stop:
    """Queued by ``close``: everything before it is processed, then the thread exits."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future


def _checked(jobs: list[Job]) -> list[Job]:
    """Fail the jobs whose input is invalid; return the others."""
    if all(job.check is None for job in jobs):
        return jobs
    valid: list[Job] = []
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


def _finish(stop: Stop) -> None:
    def done() -> None:
        if not stop.future.done():
            stop.future.set_result(None)

    with contextlib.suppress(RuntimeError):
        stop.loop.call_soon_threadsafe(done)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("rollback failed")


class _EngineThread(ABC):
    """A daemon thread, the queue it serves and the connection it alone uses."""

    def __init__(self, path: Path, conn: sqlite3.Connection, limit: int, name: str) -> None:
        self.path = path
        self._conn = conn
        self._limit = limit
        self.queue: SimpleQueue[Job | Stop] = SimpleQueue()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    @abstractmethod
    def _run(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
        """Run one batch and settle every job in it."""

    def _main(self) -> None:
        queue, conn = self.queue, self._conn
        stop: Stop | None = None
        try:
            while stop is None:
                item = queue.get()
                if isinstance(item, Stop):
                    stop = item
                    break
                batch: list[Job] = [item]
                while len(batch) < self._limit:
                    try:
                        more = queue.get_nowait()
                    except Empty:
                        break
                    if isinstance(more, Stop):
                        stop = more
                        break
                    batch.append(more)
                try:
                    self._run(conn, batch)
                except Exception as exc:
                    # ``_run`` settles its own errors; this is a bug, but callers must not hang.
                    log.exception("storage thread: unexpected error")
                    _settle([(job, None, exc) for job in batch])
        finally:
            self._drain(stop)

    def _drain(self, stop: Stop | None) -> None:
        leftovers: list[Outcome] = []
        stops: list[Stop] = [] if stop is None else [stop]
        while True:
            try:
                item = self.queue.get_nowait()
            except Empty:
                break
            if isinstance(item, Stop):
                stops.append(item)
            else:
                # Raced with close(): queued after the stop marker, so never run.
                leftovers.append((item, None, EngineClosed(f"engine for {self.path} closed")))
        _settle(leftovers)
        try:
            self._conn.close()
        except sqlite3.Error:
            log.exception("closing %s failed", self.path)
        for s in stops:
            _finish(s)


class Writer(_EngineThread):
    """The group-commit writer; ``commit`` (the engine's) ends each batch's transaction."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        max_batch: int,
        commit: Callable[[sqlite3.Connection], None],
    ) -> None:
        super().__init__(path, conn, max_batch, f"kvstore-sqlite-writer:{path.name}")
        self._commit = commit
        self.journal: list[Any] = []  # changes of the open transaction, in order
        self.on_commit: Callable[[list[Any]], None] | None = None
        self.cache: ReadCache | None = None
        # Written on the writer thread, read without locking: approximate while busy.
        self.commits = 0
        self.jobs = 0

    def _run(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
        jobs = _checked(jobs)
        if not jobs:
            return
        self.journal.clear()
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
            _rollback(conn)
            if len(jobs) == 1:
                _settle([(jobs[0], None, exc)])
            else:
                self._run_isolated(conn, jobs)
            return
        outcomes: list[Outcome] = [
            (job, result, None) for job, result in zip(jobs, results, strict=True)
        ]
        try:
            self._commit_cached(conn, outcomes)
        except Exception as exc:
            _rollback(conn)
            self.journal.clear()
            _settle([(job, None, exc) for job in jobs])
            return
        self.commits += 1
        self.jobs += len(jobs)
        self._committed()
        _settle(outcomes)

    def _commit_cached(self, conn: sqlite3.Connection, outcomes: list[Outcome]) -> None:
        """COMMIT, with the read cache told before and after (``CLEAR`` if it failed)."""
        cache = self.cache
        if cache is None:
            self._commit(conn)
            return
        cache.begin()
        try:
            self._commit(conn)
        except BaseException:
            cache.end(CLEAR)
            raise
        # Committed: from here on nothing may raise, or callers would be told it failed.
        try:
            updates: list[Update] = []
            for job, result, exc in outcomes:
                if exc is not None or job.effect is None:
                    continue
                effect = job.effect(result)
                if effect is CLEAR:
                    cache.end(CLEAR)
                    return
                updates.extend(cast(Sequence[Update], effect))
        except Exception:  # a bug in an effect: forgetting everything is always right
            log.exception("read cache update failed")
            cache.end(CLEAR)
            return
        cache.end(updates)

    def _committed(self) -> None:
        changes = self.journal.copy()
        self.journal.clear()
        if self.on_commit is not None and changes:
            try:
                self.on_commit(changes)
            except Exception:  # the index is an accelerator: never fail a durable write
                log.exception("digest index update failed")

    def _run_isolated(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
        """Rerun a batch in which some job failed, a savepoint per job, so it fails alone."""
        outcomes: list[Outcome] = []
        self.journal.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                assert job.fn is not None
                conn.execute("SAVEPOINT job")
                mark = len(self.journal)
                try:
                    result = job.fn(conn)
                except Exception as exc:
                    del self.journal[mark:]
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            self._commit_cached(conn, outcomes)
        except Exception as exc:
            _rollback(conn)
            self.journal.clear()
            done = {id(job) for job, _, _ in outcomes}
            outcomes = [(job, None, e if e is not None else exc) for job, _, e in outcomes]
            outcomes += [(job, None, exc) for job in jobs if id(job) not in done]
        else:
            self.commits += 1
            self.jobs += len(jobs)
            self._committed()
        _settle(outcomes)


class Reader(_EngineThread):
    """The batching reader, on a connection the engine has made query-only."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        super().__init__(path, conn, MAX_READ_BATCH, f"kvstore-sqlite-reader:{path.name}")
        # Written on the reader thread, read without locking: approximate while busy.
        self.batches = 0
        self.jobs = 0

    def _run(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
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
                    found = lookup(keys, conn)
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
            _rollback(conn)
        self.batches += 1
        self.jobs += len(jobs)
        _settle(outcomes)
