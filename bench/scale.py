"""How kvstore's cost grows as the work grows (issue 12): concurrency, keys, repair.

Usage: python bench/scale.py [--json] [--part sweep|keys|repair|all] [--seconds 3]
                             [--levels 16,64,256,1024] [--key-counts 10000,1000000]
                             [--repair-keys 1000000]

Three parts, each with its baseline in the same run:
- ``sweep``: one 5-node cluster (N = 3, SQLite with fsync, mutual TLS: the defaults) on
  loopback, 1,000 keys of 100 bytes written first. For each number of calls in flight,
  quorum puts then quorum gets back to back for ``--seconds`` each, through one
  ``Client`` (sessions): ops/s with p50/p99, and every node's resident memory (VmRSS).
  Each level is compared with the first.
- ``keys``: for each key count, a fresh cluster is filled with that many keys (quorum
  puts, 1,024 in flight: the load rate is reported), then quorum puts and gets on keys
  drawn uniformly from all of them, 256 in flight; node RSS after. Each count is
  compared with the first (10k).
- ``repair``: anti-entropy between two replicas of ``--repair-keys`` keys, in sync and
  with 0.1% and 1% differing, by a full rebuild and by the incremental digests, in one
  process (``bench/scale_repair.py`` says how).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, machine, write_cluster_config  # noqa: E402
from bench.scale_repair import anti_entropy  # noqa: E402
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


def compare_to_first(rows: list[dict[str, Any]]) -> None:
    """Each row's put and get throughput and p99 as ratios to the first row's."""
    base = rows[0]
    for row in rows:
        for op in ("quorum_put", "quorum_get"):
            figure = row[op]
            figure["ops_vs_first"] = round(figure["ops_per_s"] / base[op]["ops_per_s"], 3)
            figure["p99_vs_first"] = round(figure["p99_ms"] / base[op]["p99_ms"], 3)


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
    compare_to_first(rows)
    for row in rows:
        for op in ("quorum_put", "quorum_get"):
            row[op] = _rounded(row[op])
    return rows


def _rounded(figure: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in figure.items()}


async def one_key_count(count: int, args: argparse.Namespace) -> dict[str, Any]:
    keys = [f"key-{i:08d}" for i in range(count)]
    rng = random.Random(count)
    picks = [rng.randrange(count) for _ in range(1 << 16)]
    with tempfile.TemporaryDirectory(prefix="kvscale-keys-") as tmp:
        cfg_path = write_cluster_config(Path(tmp), n=3, request_timeout_ms=10_000)
        cfg = config_mod.load(cfg_path)
        with LocalCluster(cfg, cfg_path) as cluster:
            cluster.start()
            async with Client.from_config(cfg) as client:

                async def fill(i: int) -> None:
                    await client.put(keys[i], VALUE, consistency="quorum")

                async def put(i: int) -> None:
                    await client.put(keys[picks[i % len(picks)]], VALUE, consistency="quorum")

                async def get(i: int) -> None:
                    await client.get(keys[picks[i % len(picks)]], consistency="quorum")

                row: dict[str, Any] = {"keys": count}
                row["load"] = _rounded(await drive(fill, 1024, total=count))
                row["quorum_put"] = _rounded(await drive(put, 256, seconds=args.seconds))
                row["quorum_get"] = _rounded(await drive(get, 256, seconds=args.seconds))
                row["node_rss_mb"] = {n: rss_mb(p.pid) for n, p in sorted(cluster.nodes.items())}
    return row


async def by_key_count(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = [await one_key_count(count, args) for count in args.key_counts]
    compare_to_first(rows)
    for row in rows:
        rss = row["node_rss_mb"].values()
        row["rss_mb_mean"] = round(sum(rss) / len(rss), 1)
    return rows


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "scale",
        "machine": machine(),
        "settings": {"seconds": args.seconds, "value_bytes": len(VALUE)},
    }
    if args.part in ("sweep", "all"):
        with tempfile.TemporaryDirectory(prefix="kvscale-") as tmp:
            # enough time for a call queued behind 1,024 others on 2 cores
            cfg_path = write_cluster_config(Path(tmp), n=3, request_timeout_ms=10_000)
            cfg = config_mod.load(cfg_path)
            with LocalCluster(cfg, cfg_path) as cluster:
                cluster.start()
                out["sweep"] = {"keys": len(KEYS), "levels": await sweep(cluster, cfg, args)}
    if args.part in ("keys", "all"):
        out["key_counts"] = await by_key_count(args)
    if args.part in ("repair", "all"):
        with tempfile.TemporaryDirectory(prefix="kvscale-repair-") as tmp:
            out["repair"] = await anti_entropy(Path(tmp), args.repair_keys, [0.0, 0.001, 0.01])
    return out


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
    parser.add_argument("--part", choices=("sweep", "keys", "repair", "all"), default="all")
    parser.add_argument(
        "--key-counts",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[10_000, 1_000_000],
        help="keys per cluster, comma-separated (default 10000,1000000)",
    )
    parser.add_argument("--repair-keys", type=int, default=1_000_000)
    args = parser.parse_args()
    result = uvloop.run(bench(args))
    if args.json:
        print(json.dumps(result))
        return 0
    for row in result.get("sweep", {}).get("levels", []):
        put, get = row["quorum_put"], row["quorum_get"]
        print(
            f"{row['in_flight']:>5} in flight: put {put['ops_per_s']:>8.0f}/s "
            f"p99 {put['p99_ms']:>7.1f} ms, get {get['ops_per_s']:>8.0f}/s "
            f"p99 {get['p99_ms']:>7.1f} ms, rss {row['node_rss_mb']}"
        )
    for row in result.get("key_counts", []):
        print(json.dumps(row))
    if "repair" in result:
        print(json.dumps(result["repair"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
