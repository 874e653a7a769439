"""Anti-entropy: one Merkle-tree round vs streaming every record (the naive baseline).

Usage: python bench/repair.py [--json] [--keys 100000] [--diff 0.01] [--engine sqlite]
                              [--repeat 3] [--value-bytes 100]

Measured IN-PROCESS, with no cluster: two replicas (two engines, SQLite by default,
fsync'd as in a node) and the real exchange code (``kvstore.node.antientropy.Replica``)
wired back to back. Every message still goes through a msgpack round trip, and its
encoded size is what "bytes" counts, so bytes are the replica-stream payload bytes a
cluster would send (gRPC framing excluded); time excludes network latency, so the
round-trip count is reported beside it (add RTT x round trips for a real network).

Setup, per repetition: replicas A and B share ``--keys`` keys; a ``--diff`` fraction of
them differ, spread over the kinds of drift repair meets (missing on A, missing on B,
newer on A, newer on B, deleted on one side). Two fresh pairs are built identically:
- anti-entropy: A runs one exchange with B (trees built on both sides, top-down
  compare, entries of differing leaves, newer versions copied both ways); afterwards
  both must hold identical contents, or the benchmark fails;
- baseline: B streams every record to A (scan, msgpack chunks of 256 KB, A applies each
  chunk with last-writer-wins). That repairs A only; both ways would cost twice.
A second anti-entropy round on the converged pair shows the cost of checking replicas
that already agree. Medians over ``--repeat`` repetitions.

Second part, on a real 5-node cluster: quorum get latency p50/p99 with read repair
off, async and blocking, and linearizable gets, in the same run (``read_repair()``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine  # noqa: E402
from kvstore.core.ring import Ring  # noqa: E402
from kvstore.core.version import Record, Timestamp  # noqa: E402
from kvstore.node.ae_wire import (  # noqa: E402
    Call,
    decode_full,
    encode_full,
    permissive_limits,
    wire_size,
)
from kvstore.node.antientropy import CHUNK_BYTES, Replica  # noqa: E402
from kvstore.storage import Engine, open_engine_async  # noqa: E402


def wire(peer: Replica) -> Call:
    """A Call that reaches ``peer`` directly, through a msgpack round trip each way."""
    ops = peer.ops()

    async def call(op: str, args: list[Any]) -> Any:
        request = msgpack.unpackb(msgpack.packb(args, use_bin_type=True), raw=False)
        reply = await ops[op](request)
        return msgpack.unpackb(msgpack.packb(reply, use_bin_type=True), raw=False)

    return call


def dataset(keys: int, diff: float, value_bytes: int, seed: int) -> tuple[list[Record], ...]:
    """(common, only_a, only_b): the records each replica gets."""
    rng = random.Random(seed)
    value = b"v" * value_bytes
    common = [Record(b"key-%08d" % i, value, Timestamp(1_000_000 + i, 0, "a")) for i in range(keys)]
    drift = rng.sample(range(keys), int(keys * diff))
    only_a: list[Record] = []
    only_b: list[Record] = []
    keep_a = set(range(keys))
    keep_b = set(range(keys))
    for n, i in enumerate(drift):
        rec = common[i]
        newer = Record(rec.key, b"n" * value_bytes, Timestamp(rec.ts.wall + 10**9, 0, "b"))
        tomb = Record(rec.key, None, Timestamp(rec.ts.wall + 10**9, 0, "b"))
        kind = n % 5
        if kind == 0:
            keep_a.discard(i)  # missing on A (a partial write)
        elif kind == 1:
            keep_b.discard(i)  # missing on B
        elif kind == 2:
            only_a.append(newer)  # newer on A
        elif kind == 3:
            only_b.append(newer)  # newer on B
        else:
            (only_a if n % 2 else only_b).append(tomb)  # deleted on one side
    a = [common[i] for i in sorted(keep_a)] + only_a
    b = [common[i] for i in sorted(keep_b)] + only_b
    return a, b


async def load(engine: Engine, records: list[Record]) -> None:
    for i in range(0, len(records), 5000):
        await engine.apply_many(records[i : i + 5000])


async def pair(kind: str, folder: Path, a: list[Record], b: list[Record]) -> tuple[Engine, Engine]:
    engines = []
    for name, records in (("a", a), ("b", b)):
        path = folder / name
        path.mkdir()
        engine = await open_engine_async(kind, path)
        await load(engine, records)
        engines.append(engine)
    return engines[0], engines[1]


async def contents(engine: Engine) -> list[Record]:
    return [r async for r in engine.scan()]


async def anti_entropy(ea: Engine, eb: Engine) -> dict[str, Any]:
    ring = Ring(["a", "b"], 16)  # N=2 of 2 nodes: both replicate every key
    a, b = Replica("a", ea, ring, 2), Replica("b", eb, ring, 2)
    began = time.perf_counter()
    entries = (await a.shared_entries(["b"], 0))["b"]
    result = await a.exchange("b", wire(b), entries, 0)
    seconds = time.perf_counter() - began
    began = time.perf_counter()
    again = await a.exchange("b", wire(b), (await a.shared_entries(["b"], 0))["b"], 0)
    again_seconds = time.perf_counter() - began
    converged = await contents(ea) == await contents(eb)
    return {
        "seconds": seconds,
        "bytes": result.bytes_sent + result.bytes_received,
        "round_trips": result.round_trips,
        "keys_repaired": result.keys_repaired,
        "leaves_differing": result.leaves_differing,
        "hashes_compared": result.hashes_compared,
        "converged": converged,
        "in_sync_round_seconds": again_seconds,
        "in_sync_round_bytes": again.bytes_sent + again.bytes_received,
    }


async def stream_all(ea: Engine, eb: Engine) -> dict[str, Any]:
    """The naive baseline: B sends every record to A, which applies them (LWW)."""
    began = time.perf_counter()
    limits = permissive_limits(Ring(["a", "b"], 16))  # validated as repair's records are
    sent = 0
    stored = 0
    batch: list[Record] = []
    budget = 0

    async def flush() -> None:
        nonlocal sent, stored
        message = ["stream", [encode_full(r) for r in batch]]
        packed = msgpack.packb(message, use_bin_type=True)
        sent += len(packed) + wire_size(0)  # the records, and an ack back
        received = msgpack.unpackb(packed, raw=False)[1]
        stored += sum(await ea.apply_many([decode_full(r, limits) for r in received]))

    async for record in eb.scan():
        batch.append(record)
        budget += len(record.key) + len(record.value or b"") + 32
        if budget >= CHUNK_BYTES:
            await flush()
            batch, budget = [], 0
    if batch:
        await flush()
    return {"seconds": time.perf_counter() - began, "bytes": sent, "keys_stored": stored}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reps: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        a, b = dataset(args.keys, args.diff, args.value_bytes, seed=rep)
        with tempfile.TemporaryDirectory(prefix="kv-repair-bench-") as tmp:
            folder = Path(tmp)
            (folder / "ae").mkdir()
            (folder / "naive").mkdir()
            ea, eb = await pair(args.engine, folder / "ae", a, b)
            na, nb = await pair(args.engine, folder / "naive", a, b)
            try:
                ae = await anti_entropy(ea, eb)
                naive = await stream_all(na, nb)
            finally:
                for engine in (ea, eb, na, nb):
                    await engine.close()
        if not ae["converged"]:
            raise SystemExit("anti-entropy did not converge the replicas: a bug")
        reps.append({"anti_entropy": ae, "naive_stream": naive})

    def med(part: str, key: str) -> float:
        return round(statistics.median(float(r[part][key]) for r in reps), 4)

    ratios_time = [r["naive_stream"]["seconds"] / r["anti_entropy"]["seconds"] for r in reps]
    ratios_bytes = [r["naive_stream"]["bytes"] / r["anti_entropy"]["bytes"] for r in reps]
    return {
        "benchmark": "repair",
        "machine": machine(),
        "setup": {
            "in_process": True,
            "engine": args.engine,
            "keys": args.keys,
            "differing": int(args.keys * args.diff),
            "value_bytes": args.value_bytes,
            "repeat": args.repeat,
        },
        "results": {
            "anti_entropy_seconds": med("anti_entropy", "seconds"),
            "anti_entropy_bytes": med("anti_entropy", "bytes"),
            "anti_entropy_round_trips": med("anti_entropy", "round_trips"),
            "anti_entropy_keys_repaired": med("anti_entropy", "keys_repaired"),
            "anti_entropy_leaves_differing": med("anti_entropy", "leaves_differing"),
            "in_sync_round_seconds": med("anti_entropy", "in_sync_round_seconds"),
            "in_sync_round_bytes": med("anti_entropy", "in_sync_round_bytes"),
            "naive_stream_seconds": med("naive_stream", "seconds"),
            "naive_stream_bytes": med("naive_stream", "bytes"),
            "time_ratio_naive_over_ae": round(statistics.median(ratios_time), 2),
            "bytes_ratio_naive_over_ae": round(statistics.median(ratios_bytes), 2),
        },
        "read_repair_get_latency": (
            None if args.no_read_repair else await read_repair(args.rr_seconds, args.repeat)
        ),
        "repetitions": reps,
    }


async def read_repair(seconds: float, rounds: int) -> dict[str, Any]:
    """Quorum get latency with read repair off/async/blocking and linearizable gets.

    A real 5-node SQLite cluster on loopback; 1,000 keys written at ``all`` first, so
    replicas agree and the figures show what each mode costs a read in the common case
    (waiting for replies beyond R, or the ABD write-back check), 32 gets in flight.
    Medians of ``rounds`` rounds; ratios are to ``off`` from the same run.
    """
    from bench._common import drive, median_of, write_cluster_config
    from kvstore import Client
    from kvstore import config as config_mod
    from kvstore.cluster.local import LocalCluster

    modes: dict[str, dict[str, Any]] = {
        "off": {"r": "quorum", "read_repair": "off"},
        "async": {"r": "quorum", "read_repair": "async"},
        "blocking": {"r": "quorum", "read_repair": "blocking"},
        "linearizable": {"consistency": "linearizable"},
    }
    with tempfile.TemporaryDirectory(prefix="kvrr-") as tmp:
        path = write_cluster_config(Path(tmp), n=3, engine="sqlite", request_timeout_ms=5000)
        cfg = config_mod.load(path)
        with LocalCluster(cfg, path) as cluster:
            await asyncio.to_thread(cluster.start)
            async with Client.from_config(cfg) as client:
                keys = [f"rr-{i}" for i in range(1000)]

                async def fill(i: int) -> None:
                    await client.put(keys[i], b"v" * 100, w="all")

                await drive(fill, 32, total=len(keys))
                figures: dict[str, Any] = {}
                for name, options in modes.items():

                    async def get(i: int, options: dict[str, Any] = options) -> None:
                        await client.get(keys[i % len(keys)], sloppy=False, **options)

                    await drive(get, 32, seconds=0.5)  # warm-up
                    figures[name] = median_of(
                        [await drive(get, 32, seconds=seconds) for _ in range(rounds)]
                    )
    base = figures["off"]
    for f in figures.values():
        f["p50_ratio_to_off"] = round(f["p50_ms"] / base["p50_ms"], 3)
        f["p99_ratio_to_off"] = round(f["p99_ms"] / base["p99_ms"], 3)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--diff", type=float, default=0.01, help="fraction of keys that differ")
    parser.add_argument("--engine", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--rr-seconds", type=float, default=3.0, help="per read-repair round")
    parser.add_argument(
        "--no-read-repair", action="store_true", help="skip the cluster part (read repair)"
    )
    args = parser.parse_args()
    report = uvloop.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report["results"].items():
            print(f"{name:<34} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
