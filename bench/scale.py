"""How kvstore's cost grows as the work grows (issue 12): the concurrency sweep.

Usage: python bench/scale.py [--json] [--seconds 3] [--levels 16,64,256,1024]

One 5-node cluster (N = 3, SQLite with fsync, mutual TLS: the defaults) on loopback,
1,000 keys of 100 bytes written first. For each number of calls in flight, quorum puts
then quorum gets back to back for ``--seconds`` each, through one ``Client`` (sessions);
each figure is ops/s with p50/p99, and every node's resident memory (VmRSS) after it.
The baseline is the first level of the same run: each level's throughput and p99 are
also given as ratios to it.

Not here yet (the issue's other two parts): 10k against 1M keys, and anti-entropy
between two replicas with 1M keys (that needs incremental Merkle trees first).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, machine, write_cluster_config  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.client.aio import Client  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402

KEYS = [f"key-{i:05d}" for i in range(1000)]
VALUE = b"v" * 100


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB (VmRSS), or NaN when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


async def sweep(cluster: LocalCluster, cfg: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with Client.from_config(cfg) as client:

        async def put(i: int) -> None:
            await client.put(KEYS[i % len(KEYS)], VALUE, consistency="quorum")

        async def get(i: int) -> None:
            await client.get(KEYS[i % len(KEYS)], consistency="quorum")

        await drive(put, 64, total=len(KEYS))  # every key exists before the sweep
        for level in args.levels:
            row: dict[str, Any] = {"in_flight": level}
            row["quorum_put"] = await drive(put, level, seconds=args.seconds)
            row["quorum_get"] = await drive(get, level, seconds=args.seconds)
            row["node_rss_mb"] = {n: rss_mb(p.pid) for n, p in sorted(cluster.nodes.items())}
            rows.append(row)
    base = rows[0]
    for row in rows:
        for op in ("quorum_put", "quorum_get"):
            figure = row[op]
            figure["ops_vs_first"] = round(figure["ops_per_s"] / base[op]["ops_per_s"], 3)
            figure["p99_vs_first"] = round(figure["p99_ms"] / base[op]["p99_ms"], 3)
            for key in ("ops_per_s", "p50_ms", "p99_ms", "seconds"):
                figure[key] = round(figure[key], 2)
    return rows


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kvscale-") as tmp:
        # enough time for a call queued behind 1,024 others on 2 cores
        cfg_path = write_cluster_config(Path(tmp), n=3, request_timeout_ms=10_000)
        cfg = config_mod.load(cfg_path)
        with LocalCluster(cfg, cfg_path) as cluster:
            cluster.start()
            rows = await sweep(cluster, cfg, args)
    return {
        "benchmark": "scale",
        "part": "concurrency sweep",
        "machine": machine(),
        "settings": {"seconds": args.seconds, "keys": len(KEYS), "value_bytes": len(VALUE)},
        "levels": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--seconds", type=float, default=3.0, help="per figure (default 3)")
    parser.add_argument(
        "--levels",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[16, 64, 256, 1024],
        help="calls in flight, comma-separated (default 16,64,256,1024)",
    )
    args = parser.parse_args()
    result = uvloop.run(bench(args))
    if args.json:
        print(json.dumps(result))
    else:
        for row in result["levels"]:
            put, get = row["quorum_put"], row["quorum_get"]
            print(
                f"{row['in_flight']:>5} in flight: put {put['ops_per_s']:>8.0f}/s "
                f"p99 {put['p99_ms']:>7.1f} ms, get {get['ops_per_s']:>8.0f}/s "
                f"p99 {get['p99_ms']:>7.1f} ms, rss {row['node_rss_mb']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
