"""A membership change under load: a 5-node cluster with 100k keys gains a sixth node.

Usage: python bench/membership.py [--json] [--keys 100000] [--rate 300] [--before 8]
       [--stream-rate 0] [--streams 1]

One run, one machine, real processes (SQLite, fsync, mutual TLS, N = 3): load
``--keys`` keys of 100 bytes at quorum, then a steady open-loop load of ``--rate``
calls/s (half puts, half gets, quorum, random keys) for ``--before`` seconds (the
baseline), then ``kvstore.cluster.operator`` adds n6 while the load goes on (every
epoch: write-both, streaming, read-new, clean-up, stable), then ``--before`` seconds
more. Figures: the streaming rate (keys/s, MB/s, over the write-both epoch, which holds
the streams), the change's time, the p99 (and p50) of calls before, during and after it
(same run), and the bytes streamed over the bytes n6 holds once the change is done
(ideal 1.0: each gained range streams once, from the node it replaces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, free_ports, machine, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.checker.staleness import percentile  # noqa: E402
from kvstore.cluster.apply import GrpcNodes  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.cluster.operator import Operator  # noqa: E402
from kvstore.node.ring_store import configured_ring  # noqa: E402

VALUE = b"v" * 100


def with_n6(path: Path) -> Path:
    """The same cluster's config with a sixth node (same data folder)."""
    (port,) = free_ports(1)
    grown = path.with_name("grow.toml")
    grown.write_text(
        path.read_text()
        + f'\n[[nodes]]\nid = "n6"\naddress = "127.0.0.1:{port}"\ndata_dir = "data/n6"\n'
    )
    return grown


def figures(samples: list[tuple[float, float, bool]], lo: float, hi: float) -> dict[str, Any]:
    lat = sorted(d for t, d, ok in samples if lo <= t < hi and ok)
    errors = sum(1 for t, _, ok in samples if lo <= t < hi and not ok)
    if not lat:
        return {"calls": 0, "errors": errors}
    return {
        "calls": len(lat),
        "errors": errors,
        "p50_ms": round(1000 * percentile(lat, 50), 2),
        "p99_ms": round(1000 * percentile(lat, 99), 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="kvstore-membership-"))
    path = write_cluster_config(folder, n=3, engine="sqlite")
    cluster = LocalCluster(config_mod.load(path), path)
    grown_path = with_n6(path)
    grown = LocalCluster(config_mod.load(grown_path), grown_path)
    keys = [f"m-{i:07d}".encode() for i in range(args.keys)]
    try:
        cluster.start()
        async with Client.from_config(cluster.config) as client:
            began = time.perf_counter()

            async def put(i: int) -> None:
                await client.put(keys[i], VALUE, consistency="quorum")

            loaded = await drive(put, 128, total=len(keys))
            load_s = time.perf_counter() - began

            samples: list[tuple[float, float, bool]] = []  # (start, latency, ok)
            stop = asyncio.Event()
            rng = random.Random(1)

            async def one(start: float) -> None:
                key = keys[rng.randrange(len(keys))]
                try:
                    if rng.random() < 0.5:
                        await client.put(key, VALUE, consistency="quorum")
                    else:
                        await client.get(key, consistency="quorum")
                except Exception:
                    samples.append((start, time.perf_counter() - start, False))
                else:
                    samples.append((start, time.perf_counter() - start, True))

            async def steady() -> None:
                tasks: set[asyncio.Task[None]] = set()
                gap = 1.0 / args.rate
                nxt = time.perf_counter()
                while not stop.is_set():
                    nxt += gap
                    task = asyncio.ensure_future(one(time.perf_counter()))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
                await asyncio.gather(*tasks)

            load = asyncio.ensure_future(steady())
            t0 = time.perf_counter()
            await asyncio.sleep(args.before)

            marks: dict[str, float] = {}

            def say(line: str) -> None:
                if line.startswith("epoch "):
                    marks.setdefault(line.split(":")[1].strip().split(" (")[0], time.perf_counter())

            nodes = GrpcNodes({n.id: n.address for n in grown.config.nodes}, grown.dialer)
            operator = Operator(
                nodes,
                list(grown.config.node_ids),
                rate_keys_s=args.stream_rate,
                say=say,
                parallel=args.streams,
            )

            async def start_new(node: str) -> None:
                await asyncio.to_thread(grown.start_node, node, join=True)

            t_change = time.perf_counter()
            final = await operator.run(configured_ring(grown.config), start_new)
            t_done = time.perf_counter()
            await asyncio.sleep(args.before)
            stop.set()
            await load
        status = grown.status("n6", timeout=5.0)
        streamed_keys = sum(s.keys for s in status.streams)
        streamed_bytes = sum(s.bytes for s in status.streams)
        with grown.sync_admin("n6") as admin:
            (held,) = admin.range_stats([(0, (1 << 64) - 1)]).counts
        stream_s = marks["reads from the new ring"] - marks["writes to both rings"]
        return {
            "benchmark": "membership",
            "machine": machine(),
            "keys": args.keys,
            "value_bytes": len(VALUE),
            "rate": args.rate,
            "stream_rate_limit": args.stream_rate,
            "parallel_streams": args.streams,
            "preload": {"seconds": round(load_s, 1), "ops_per_s": round(loaded["ops_per_s"])},
            "final_epoch": final.epoch,
            "change_s": round(t_done - t_change, 2),
            "streaming": {
                "seconds": round(stream_s, 2),
                "keys": streamed_keys,
                "bytes": streamed_bytes,
                "keys_per_s": round(streamed_keys / stream_s),
                "mb_per_s": round(streamed_bytes / stream_s / 1e6, 2),
            },
            "n6_holds": {"keys": held.keys, "bytes": held.bytes},
            "streamed_over_owned_bytes": round(streamed_bytes / max(1, held.bytes), 3),
            "calls": {
                "before": figures(samples, t0, t_change),
                "during": figures(samples, t_change, t_done),
                "after": figures(samples, t_done, float("inf")),
            },
        }
    finally:
        grown.load_state()
        grown.stop()
        cluster.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=300.0, help="steady load, calls/s")
    ap.add_argument("--before", type=float, default=8.0, help="seconds of load around it")
    ap.add_argument("--stream-rate", type=float, default=0.0, help="keys/s per stream (0: none)")
    ap.add_argument("--streams", type=int, default=1, help="streams pulled at once")
    args = ap.parse_args()
    out = uvloop.run(run(args))
    out["during_over_before_p99"] = round(
        out["calls"]["during"]["p99_ms"] / out["calls"]["before"]["p99_ms"], 2
    )
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
