"""bench/scale.py's anti-entropy part: a round between two replicas of 1M keys.

Two SQLite engines (fsync'd, as in a node) hold the keys that nodes n1 and n2 both
replicate on a 5-node ring (64 vnodes, N = 3), so the trees cover shared ranges with
edges inside buckets, as in a cluster. The real exchange code
(``kvstore.node.antientropy.Replica``) runs back to back in one process, every message
through a msgpack round trip; bytes are the replica-stream payloads.

For each level (in sync, 0.1% and 1% of the keys differing: missing on one side, newer
on one side, deleted on one side), the same amount of fresh drift is made twice, and
repaired once by each method:
- ``full_rebuild``: both sides scan their store and build a tree from every entry (what
  every round did before the digest index);
- ``digests``: both sides sum their tree from the engine's incremental digests and read
  only the buckets that differ (or straddle a shared range's edge).
After each round the two engines' digest indexes must be equal (with every key shared,
that is equal contents), or the benchmark fails. Time excludes network latency, so the
round trips are reported beside it.
"""

from __future__ import annotations

import gc
import random
import time
from pathlib import Path
from typing import Any

from bench.repair import wire
from kvstore.core import merkle
from kvstore.core.ring import Ring
from kvstore.core.version import Record, Timestamp
from kvstore.node.ae_wire import PeerRound
from kvstore.node.antientropy import Replica
from kvstore.storage import SqliteEngine

NODES = ["n1", "n2", "n3", "n4", "n5"]
VALUE = b"v" * 100
BASE_WALL = 1_700_000_000_000_000


def shared_keys(ring: Ring, count: int) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        key = b"key-%09d" % i
        if merkle.shared(ring, key, 3, "n1", "n2"):
            out.append(key)
        i += 1
    return out


async def load(engine: SqliteEngine, keys: list[bytes]) -> None:
    for i in range(0, len(keys), 5000):
        await engine.apply_many(
            [Record(k, VALUE, Timestamp(BASE_WALL, 0, "n3")) for k in keys[i : i + 5000]]
        )


async def drift(
    a: SqliteEngine, b: SqliteEngine, keys: list[bytes], count: int, generation: int, seed: int
) -> None:
    """Make ``count`` keys differ, a fifth of each kind, newer than anything before."""
    rng = random.Random(seed)
    chosen = rng.sample(keys, count)
    wall = BASE_WALL + generation * 1_000_000_000
    missing: tuple[list[bytes], list[bytes]] = ([], [])
    writes: tuple[list[Record], list[Record]] = ([], [])
    for n, key in enumerate(chosen):
        kind, side = n % 5, n % 2
        if kind == 0:  # missing on one side (a write that reached the other only)
            missing[side].append(key)
        elif kind in (1, 2):  # newer on one side
            writes[side].append(Record(key, b"n%d" % generation, Timestamp(wall + n, 0, "n1")))
        else:  # deleted on one side
            writes[side].append(Record(key, None, Timestamp(wall + n, 0, "n2")))
    for engine, gone, newer in zip((a, b), missing, writes, strict=True):
        held = [r for r in await engine.get_many(gone) if r is not None]
        if held:
            await engine.drop(held)
        for i in range(0, len(newer), 5000):
            await engine.apply_many(newer[i : i + 5000])


async def one_round(a: Replica, b: Replica, method: str) -> dict[str, Any]:
    began = time.perf_counter()
    result: PeerRound
    if method == "full_rebuild":
        entries = (await a.shared_entries(["n2"], 0))["n2"]
        result = await a.exchange("n2", wire(b), entries, 0, depth=16)
    else:
        result = await a.exchange("n2", wire(b), None, 0)
        assert result.digests
    seconds = time.perf_counter() - began
    ia, ib = a.engine.digests, b.engine.digests
    assert ia is not None and ib is not None
    if not ia.same_as(ib):
        raise SystemExit(f"{method}: the replicas did not converge (a bug)")
    return {
        "seconds": round(seconds, 4),
        "bytes": result.bytes_sent + result.bytes_received,
        "messages": result.round_trips,
        "leaves_differing": result.leaves_differing,
        "keys_repaired": result.keys_repaired,
    }


async def anti_entropy(folder: Path, keys_count: int, levels: list[float]) -> dict[str, Any]:
    ring = Ring(NODES, 64)
    keys = shared_keys(ring, keys_count)
    ea = await SqliteEngine.open(folder / "a.sqlite3")
    eb = await SqliteEngine.open(folder / "b.sqlite3")
    try:
        began = time.perf_counter()
        await load(ea, keys)
        await load(eb, keys)
        load_s = time.perf_counter() - began
        a, b = Replica("n1", ea, ring, 3), Replica("n2", eb, ring, 3)
        rows: list[dict[str, Any]] = []
        generation = 1
        for level in levels:
            count = int(len(keys) * level)
            row: dict[str, Any] = {"differing_fraction": level, "differing_keys": count}
            for method in ("digests", "full_rebuild"):
                await drift(ea, eb, keys, count, generation, seed=generation)
                generation += 1
                gc.collect()  # neither method pays for the other's garbage
                row[method] = await one_round(a, b, method)
            row["speedup"] = round(row["full_rebuild"]["seconds"] / row["digests"]["seconds"], 1)
            rows.append(row)
    finally:
        await ea.close()
        await eb.close()
    began = time.perf_counter()
    reopened = await SqliteEngine.open(folder / "b.sqlite3")
    open_s = time.perf_counter() - began
    await reopened.close()
    return {
        "keys": len(keys),
        "load_seconds_two_replicas": round(load_s, 1),
        "open_with_index_build_seconds": round(open_s, 2),
        "levels": rows,
    }
