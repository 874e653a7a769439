"""Storage benchmark: what group commit buys, against a bare sqlite3 baseline in the same run.

Measured per repetition, in this order, each for ``--seconds``:
- ``baseline_commits_per_s``: a bare sqlite3 loop (no asyncio, no threads), WAL +
  synchronous=FULL, one UPSERT per transaction: the floor of one durable commit.
- ``single_commits_per_s``: ``await engine.apply(r)`` one at a time (one commit each).
- ``group_records_per_s``: 64 concurrent appliers, each awaiting ``apply`` in a loop;
  the engine's writer shares commits among them (``records_per_commit`` says how much).
- ``reads_per_s``: 64 concurrent readers, each awaiting ``get`` of a random stored key.
Ratios are taken per repetition (same run, same disk state) and their median reported,
because these machines are noisy. Every run uses a fresh database in a temporary directory.

    .venv/bin/python bench/storage.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from kvstore.core.version import Record, Timestamp
from kvstore.storage.sqlite import _SCHEMA, _UPSERT, SqliteEngine
from kvstore.storage.sqlite_schema import db_token

VALUE = b"x" * 100


def record(i: int) -> Record:
    return Record(b"bench%09d" % i, VALUE, Timestamp(1_700_000_000_000_000 + i, 0, "bench"))


def baseline(path: Path, seconds: float) -> float:
    """Durable single-row commits/s with nothing but sqlite3, on the engine's own schema."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA:
            conn.execute(statement)
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            r = record(n)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                _UPSERT, (r.key, r.value, r.ts.wall, r.ts.logical, r.ts.node, db_token(r.key))
            )
            conn.execute("COMMIT")
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()


async def single(engine: SqliteEngine, seconds: float, first: int) -> float:
    loop = asyncio.get_running_loop()
    n = 0
    t0 = loop.time()
    deadline = t0 + seconds
    while loop.time() < deadline:
        await engine.apply(record(first + n))
        n += 1
    return n / (loop.time() - t0)


async def group(
    engine: SqliteEngine, seconds: float, first: int, concurrency: int
) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    next_i = first
    done = 0
    deadline = loop.time() + seconds

    async def applier() -> None:
        nonlocal next_i, done
        while loop.time() < deadline:
            i = next_i
            next_i += 1
            await engine.apply(record(i))
            done += 1

    commits0 = engine.stats()["commits"]
    t0 = loop.time()
    await asyncio.gather(*(applier() for _ in range(concurrency)))
    elapsed = loop.time() - t0
    commits = engine.stats()["commits"] - commits0
    return done / elapsed, done / max(commits, 1)


async def reads(
    engine: SqliteEngine, seconds: float, first: int, stored: int, concurrency: int
) -> float:
    loop = asyncio.get_running_loop()
    rng = random.Random(1)
    keys = [record(first + rng.randrange(stored)).key for _ in range(50_000)]
    done = 0
    deadline = loop.time() + seconds

    async def reader(offset: int) -> None:
        nonlocal done
        i = offset
        while loop.time() < deadline:
            got = await engine.get(keys[i % len(keys)])
            assert got is not None
            i += concurrency
            done += 1

    t0 = loop.time()
    await asyncio.gather(*(reader(j) for j in range(concurrency)))
    return done / (loop.time() - t0)


async def one_run(directory: Path, seconds: float, concurrency: int) -> dict[str, float]:
    result: dict[str, float] = {}
    result["baseline_commits_per_s"] = await asyncio.to_thread(
        baseline, directory / "baseline.sqlite3", seconds
    )
    engine = await SqliteEngine.open(directory / "engine.sqlite3")
    try:
        result["single_commits_per_s"] = await single(engine, seconds, 0)
        rate, per_commit = await group(engine, seconds, 10_000_000, concurrency)
        result["group_records_per_s"] = rate
        result["group_records_per_commit"] = per_commit
        stored = 20_000
        await engine.apply_many([record(20_000_000 + i) for i in range(stored)])
        result["reads_per_s"] = await reads(engine, seconds, 20_000_000, stored, concurrency)
    finally:
        await engine.close()
    result["group_vs_baseline"] = result["group_records_per_s"] / result["baseline_commits_per_s"]
    result["single_vs_baseline"] = result["single_commits_per_s"] / result["baseline_commits_per_s"]
    result["group_vs_single"] = result["group_records_per_s"] / result["single_commits_per_s"]
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    runs: list[dict[str, float]] = []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="kvstore-bench-", dir=args.dir) as tmp:
            runs.append(await one_run(Path(tmp), args.seconds, args.concurrency))
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {
        "benchmark": "storage",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "loop": "uvloop",
        },
        "params": {
            "reps": args.reps,
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "value_bytes": len(VALUE),
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
        "median": {k: round(v, 2) for k, v in median.items()},
        "runs": [{k: round(v, 2) for k, v in r.items()} for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dir", default=None, help="where the temporary databases go")
    args = parser.parse_args()
    report = uvloop.run(main_async(args))
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report["median"].items():
        print(f"{key:>28}: {value:,.2f}")


if __name__ == "__main__":
    main()
