"""What only the durable engine promises: data and hints outlive the process, an
acknowledged write survives SIGKILL, group commit really shares commits, a failed commit
fails its whole batch and nothing else, and the event loop keeps running throughout.

Some tests reach into the engine (``_commit``, ``_wq``) to hold the writer thread still,
so that which calls share a batch is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kvstore.core.digests import TOKEN_END
from kvstore.core.merkle import entry_of
from kvstore.core.version import Record, Timestamp
from kvstore.storage import SqliteEngine, group_commit, sqlite_schema
from kvstore.storage.base import Hint
from tests.storage.contract import assert_digests_exact, rec, scan_all, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[SqliteEngine]:
    engine = await SqliteEngine.open(tmp_path / "kv.sqlite3")
    yield engine
    await engine.close()


async def test_data_and_hints_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "data" / "kv.sqlite3"
    engine = await SqliteEngine.open(path, scan_chunk=3)
    records = [rec(b"k%02d" % i, None if i % 4 == 0 else b"v%d" % i, i + 1) for i in range(20)]
    records.append(rec(b"", b"", 7))
    await engine.apply_many(records)
    hints = [
        Hint(await engine.add_hint(f"n{i % 3}", r, 1000 - i), f"n{i % 3}", r, 1000 - i)
        for i, r in enumerate(records[:9])
    ]
    deleted = [hints[2].hint_id, hints[-1].hint_id]  # including the highest id
    await engine.delete_hints(deleted)
    kept = [h for h in hints if h.hint_id not in deleted]
    before = (await scan_all(engine), await engine.hints(), await engine.hint_counts())
    await engine.close()

    engine = await SqliteEngine.open(path)
    try:
        assert await scan_all(engine) == sorted(records, key=lambda r: r.key) == before[0]
        assert await engine.count() == len(records)
        assert await engine.hints() == sorted(kept, key=lambda h: h.stored_at_us) == before[1]
        assert await engine.hint_counts() == before[2]
        # Ids are never reused, not even the highest one deleted before the restart.
        new_id = await engine.add_hint("n0", records[0], 1)
        assert new_id > max(h.hint_id for h in hints)
        # LWW still holds against what was stored before the restart.
        assert await engine.apply(records[1]) is False
        assert await engine.apply(rec(records[1].key, b"newer", 100)) is True
    finally:
        await engine.close()


async def test_close_flushes_pending_writes_to_disk(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    engine = await SqliteEngine.open(path)
    records = [rec(b"p%03d" % i, b"v", 1) for i in range(200)]
    tasks = [asyncio.ensure_future(engine.apply(r)) for r in records]
    await asyncio.sleep(0)
    await engine.close()
    assert [t.result() for t in tasks] == [True] * len(records)
    engine = await SqliteEngine.open(path)
    try:
        assert await scan_all(engine) == records
    finally:
        await engine.close()


async def test_wal_and_full_sync(engine: SqliteEngine) -> None:
    # Ask the writer's own connection: synchronous is a per-connection setting.
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        (sync,) = conn.execute("PRAGMA synchronous").fetchone()
        return str(mode), int(sync)

    mode, sync = await engine._submit(engine._wq, pragmas)
    assert (mode, sync) == ("wal", 2)  # 2 is FULL


async def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    await (await SqliteEngine.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        await SqliteEngine.open(path)


async def test_group_commit_shares_commits(engine: SqliteEngine) -> None:
    before = engine.stats()
    results = await asyncio.gather(*(engine.apply(rec(b"g%d" % i, b"v", 1)) for i in range(64)))
    assert results == [True] * 64
    after = engine.stats()
    commits = after["commits"] - before["commits"]
    assert after["write_jobs"] - before["write_jobs"] == 64
    # One commit per caller would be 64; callers queued during a commit share the next.
    assert 1 <= commits <= 16, commits


async def test_concurrent_reads_share_read_batches(tmp_path: Path) -> None:
    engine = await SqliteEngine.open(tmp_path / "kv.sqlite3", cache_bytes=0)  # every get reads
    try:
        await engine.apply_many([rec(b"g%d" % i, b"v", 1) for i in range(64)])
        before = engine.stats()
        got = await asyncio.gather(*(engine.get(b"g%d" % i) for i in range(64)))
        assert all(g is not None for g in got)
        reads = engine.stats()
        assert reads["read_jobs"] - before["read_jobs"] == 64
        assert reads["read_batches"] - before["read_batches"] <= 16
    finally:
        await engine.close()


class HeldWriter:
    """Stops the writer thread inside its first commit until ``release``, so the calls
    queued meanwhile all land in the writer's next batch. ``fail`` picks commits (by
    number, from 1) that raise instead of committing."""

    def __init__(self, engine: SqliteEngine, fail: set[int] | None = None) -> None:
        self.engine = engine
        self.fail = fail or set()
        self.commits = 0
        self.inside = threading.Event()
        self.gate = threading.Event()
        real = engine._commit

        def commit(conn: sqlite3.Connection) -> None:
            self.commits += 1
            if self.commits == 1:
                self.inside.set()
                self.gate.wait(30)
            if self.commits in self.fail:
                # As a disk error would: COMMIT did not happen, the transaction is open.
                raise sqlite3.OperationalError("disk I/O error (injected)")
            real(conn)

        engine._commit = commit  # type: ignore[method-assign]

    async def hold(self) -> asyncio.Future[bool]:
        blocker = asyncio.ensure_future(self.engine.apply(rec(b"blocker", b"b", 1)))
        await wait_until(self.inside.is_set)
        return blocker

    async def queue(self, calls: list[Awaitable[Any]]) -> asyncio.Future[list[Any]]:
        queued = self.engine._wq.qsize()
        batch = asyncio.gather(*calls, return_exceptions=True)
        await wait_until(lambda: self.engine._wq.qsize() == queued + len(calls))
        return batch

    def release(self) -> None:
        self.gate.set()


async def test_failed_commit_fails_every_caller_in_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    engine = await SqliteEngine.open(path)
    try:
        held = HeldWriter(engine, fail={2})
        blocker = await held.hold()
        records = [rec(b"f%02d" % i, b"v", 1) for i in range(20)]
        batch = await held.queue(
            [
                *(engine.apply(r) for r in records[:10]),
                engine.apply_many(records[10:]),
                engine.add_hint("n2", records[0], 1),
                engine.delete_hints([1]),
            ]
        )
        held.release()
        assert await asyncio.wait_for(blocker, 10) is True
        outcomes = await asyncio.wait_for(batch, 10)
        assert len(outcomes) == 13
        for outcome in outcomes:
            assert isinstance(outcome, sqlite3.OperationalError), outcome
            assert "injected" in str(outcome)
        # Nothing of the failed batch was written, and the writer carries on.
        assert await engine.get_many([r.key for r in records]) == [None] * len(records)
        assert await engine.hint_counts() == {}
        await assert_digests_exact(engine)  # the failed commit moved no digest
        assert await engine.apply(records[0]) is True
        assert await engine.apply_many(records[1:]) == [True] * 19
    finally:
        await engine.close()
    engine = await SqliteEngine.open(path)
    try:
        assert [r.key for r in await scan_all(engine)] == sorted(
            [b"blocker"] + [r.key for r in records]
        )
    finally:
        await engine.close()


async def test_rejected_call_fails_alone(engine: SqliteEngine) -> None:
    # A record the database itself refuses (here a trigger; in life e.g. SQLITE_TOOBIG),
    # and a call whose input is invalid (checked on the writer thread), share a batch
    # with good calls.
    with sqlite3.connect(engine.path) as side:
        side.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON kv WHEN NEW.key = x'706f69736f6e'"
            " BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
        )
    side.close()
    held = HeldWriter(engine)
    blocker = await held.hold()
    good = [rec(b"good%d" % i, b"v", 1) for i in range(5)]
    poison = rec(b"poison", b"v", 1)
    invalid = Record(b"k", b"v", Timestamp(1, 2**63, "n"))
    batch = await held.queue(
        [
            engine.apply(good[0]),
            engine.apply(poison),
            engine.apply_many([good[1], good[2]]),
            engine.apply_many([good[3], poison]),  # fails as a whole: one call, one commit
            engine.add_hint("n2", poison, 5),
            engine.apply_many([good[4], invalid]),
        ]
    )
    held.release()
    assert await asyncio.wait_for(blocker, 10) is True
    ok0, bad, ok12, bad3, hint_id, bad4 = await asyncio.wait_for(batch, 10)
    assert ok0 is True and ok12 == [True, True] and isinstance(hint_id, int)
    for outcome in (bad, bad3):
        assert isinstance(outcome, sqlite3.IntegrityError) and "poison" in str(outcome)
    assert isinstance(bad4, ValueError)
    got = await engine.get_many([r.key for r in good] + [b"poison"])
    assert got == [good[0], good[1], good[2], None, None, None]
    assert await engine.hints() == [Hint(hint_id, "n2", poison, 5)]
    await assert_digests_exact(engine)  # good[3], rolled back with its call, is not counted


_SCHEMA_1 = """CREATE TABLE kv (
    key BLOB NOT NULL PRIMARY KEY, value BLOB, wall INTEGER NOT NULL,
    logical INTEGER NOT NULL, node TEXT NOT NULL) WITHOUT ROWID"""


async def test_a_version_1_file_is_migrated(tmp_path: Path) -> None:
    # A file written before the token column existed: opened, it gains the column (filled
    # and indexed), keeps every record, and its digests and token ranges are right.
    path = tmp_path / "kv.sqlite3"
    records = [rec(b"old%03d" % i, None if i % 7 == 0 else b"v%d" % i, 5 + i) for i in range(200)]
    with sqlite3.connect(path) as conn:
        conn.execute(_SCHEMA_1)
        conn.executemany(
            "INSERT INTO kv VALUES (?, ?, ?, ?, ?)",
            [(r.key, r.value, r.ts.wall, r.ts.logical, r.ts.node) for r in records],
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    engine = await SqliteEngine.open(path)
    try:
        assert await scan_all(engine) == sorted(records, key=lambda r: r.key)
        await assert_digests_exact(engine)
        assert set(await engine.entries_in([(0, TOKEN_END)])) == {entry_of(r) for r in records}
        assert await engine.apply(rec(b"new", b"n", 1)) is True
        await assert_digests_exact(engine)
    finally:
        await engine.close()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(kv)")}
    conn.close()
    assert version == 2 and "kv_by_token" in indexes


async def test_digests_are_rebuilt_on_open(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    engine = await SqliteEngine.open(path)
    await engine.apply_many([rec(b"r%d" % i, b"v", 3) for i in range(50)])
    sums = engine.digests.sums.copy()  # type: ignore[union-attr]
    await engine.close()
    engine = await SqliteEngine.open(path)
    try:
        assert engine.digests is not None and (engine.digests.sums == sums).all()
        assert engine.digests.entries == 50
    finally:
        await engine.close()
    engine = await SqliteEngine.open(path, digest_depth=None)
    try:
        assert engine.digests is None
        assert await engine.apply(rec(b"r0", b"w", 4)) is True  # no journal, still LWW
    finally:
        await engine.close()


def _held_in_engine_thread(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, reached: asyncio.Event
) -> tuple[threading.Event, list[int]]:
    """Wrap ``module.name`` (work an engine thread runs) so that its first call tells the
    loop it began, then waits until the loop lets it go on: the work can finish only if
    the loop ran while it was under way. Returns the release and the threads it ran on."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    release = threading.Event()
    threads: list[int] = []
    real = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        if threads[-1] == loop_thread:  # waiting here would stop the loop for good
            raise AssertionError(f"{name} ran on the event loop's thread")
        if len(threads) == 1:
            loop.call_soon_threadsafe(reached.set)
            release.wait(timeout=60)  # a guard should the test stop early, not a bound
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return release, threads


async def test_engine_work_runs_off_the_event_loop(
    engine: SqliteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk writes, bulk reads and scans each run on an engine thread while the loop
    goes on: each is held inside the engine until a loop callback releases it."""
    records = [rec(b"big%06d" % i, b"x" * 100, 1) for i in range(2_000)]
    keys = [r.key for r in records]

    async def scan_count() -> int:
        return len(await scan_all(engine))

    cases: list[tuple[object, str, Callable[[], Awaitable[object]], object]] = [
        (sqlite_schema, "apply_records", lambda: engine.apply_many(records), [True] * 2_000),
        (group_commit, "lookup", lambda: engine.get_many(keys), records),
        (sqlite_schema, "scan_page", scan_count, 2_000),
    ]
    loop_thread = threading.get_ident()
    for module, name, work, expected in cases:
        reached = asyncio.Event()
        with monkeypatch.context() as patch:
            release, threads = _held_in_engine_thread(patch, module, name, reached)
            task = asyncio.ensure_future(work())
            try:
                # the loop runs while the engine is inside ``name``; the wait ends at
                # once if the work ran on the loop and failed (never a bare timeout)
                await asyncio.wait([task, asyncio.ensure_future(reached.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                assert reached.is_set() and not task.done(), name
            finally:
                release.set()
            assert await task == expected, name
        assert threads and loop_thread not in threads, name
    assert await engine.count() == len(records)


_WRITER = r"""
import asyncio, sys, time
from pathlib import Path
from kvstore.core.version import Record, Timestamp
from kvstore.storage.sqlite import SqliteEngine

async def main() -> None:
    engine = await SqliteEngine.open(Path(sys.argv[1]))
    real_commit = engine._commit

    def slow_commit(conn):
        # A slow disk: if an ack ever ran ahead of its commit, a kill would land between.
        time.sleep(0.005)
        real_commit(conn)

    engine._commit = slow_commit

    async def put(i: int) -> None:
        await engine.apply(Record(b"k%08d" % i, b"v%d" % i, Timestamp(i + 1, 0, "w")))
        print("r", i, flush=True)

    async def hint(i: int) -> None:
        r = Record(b"h%08d" % i, None if i % 3 else b"h", Timestamp(i + 1, 0, "w"))
        hint_id = await engine.add_hint("n%d" % (i % 3), r, i)
        print("h", i, hint_id, flush=True)

    i = 0
    while True:
        await asyncio.gather(*(put(i + j) for j in range(16)), hint(i))
        i += 16

asyncio.run(main())
"""


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITER,
        str(path),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(lines) < 1500:
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - loop.time())
            if not line:
                err = await proc.stderr.read()
                raise AssertionError(f"writer exited early: {err.decode(errors='replace')}")
            lines.append(line)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it may have died on its own
                os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    # Acks printed before the kill are still in the pipe; a cut-off last line is not one.
    rest = await proc.stdout.read()
    lines += [line + b"\n" for line in rest.split(b"\n")[:-1]]
    assert proc.returncode == -signal.SIGKILL

    acked_records: list[int] = []
    acked_hints: dict[int, int] = {}
    for line in lines:
        kind, *fields = line.split()
        if kind == b"r":
            acked_records.append(int(fields[0]))
        else:
            acked_hints[int(fields[1])] = int(fields[0])
    assert len(acked_records) >= 1000 and acked_hints

    engine = await SqliteEngine.open(path)
    try:
        expected = [
            Record(b"k%08d" % i, b"v%d" % i, Timestamp(i + 1, 0, "w")) for i in acked_records
        ]
        assert await engine.get_many([r.key for r in expected]) == expected
        stored = {h.hint_id: h for h in await engine.hints(limit=10**6)}
        for hint_id, i in acked_hints.items():
            h = stored[hint_id]
            assert (h.owner, h.record.key, h.stored_at_us) == (f"n{i % 3}", b"h%08d" % i, i)
            assert h.record.value == (None if i % 3 else b"h")
    finally:
        await engine.close()


async def test_a_full_queue_refuses_at_once_and_nothing_is_half_done(tmp_path: Path) -> None:
    from kvstore.errors import Overloaded

    engine = await SqliteEngine.open(tmp_path / "kv.sqlite3", max_queued=3)
    try:
        records = [Record(f"q{i}".encode(), b"v", Timestamp(1, 0, "n1")) for i in range(10)]
        # ten calls start in one turn of the loop; none can finish before the loop runs on
        results = await asyncio.gather(*(engine.apply(r) for r in records), return_exceptions=True)
        refused = [r for r in results if isinstance(r, Overloaded)]
        assert len(refused) == 7 and all(r.definite for r in refused)
        assert results[:3] == [True, True, True]
        stored = await engine.get_many([r.key for r in records])
        assert [s is not None for s in stored] == [True] * 3 + [False] * 7
        assert await engine.apply(records[5])  # room again once the queue drained
    finally:
        await engine.close()
