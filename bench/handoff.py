"""Hinted handoff: hint replay throughput and time to repair a returning node.

Usage: python bench/handoff.py [--json] [--keys 10000] [--concurrency 64] [--replay-rate N]

One run, one machine, a real 5-node cluster (SQLite, fsync): write ``--keys`` keys at
quorum with every node up (the baseline); kill one node, wait until every other node
sees it down, write ``--keys`` fresh keys at quorum (fallbacks store hints for it);
restart it and time until no hint is pending anywhere, then check that the returned
node holds every key it owns. ``--replay-rate`` sets each node's replay throttle
(hints/s); the default is high so the figure shows the machinery, not the throttle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, machine, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.core.ring import Ring  # noqa: E402

VALUE = b"h" * 100
VICTIM = "n5"


def pending_hints(cluster: LocalCluster) -> int:
    total = 0
    for node in cluster.config.node_ids:
        with contextlib.suppress(grpc.RpcError):
            total += sum(cluster.status(node).hints_pending.values())
    return total


def all_see(cluster: LocalCluster, target: str, state: str) -> bool:
    try:
        return all(
            {p.node: p.state for p in cluster.status(n).peers}[target] == state
            for n in cluster.config.node_ids
            if n != target
        )
    except grpc.RpcError:
        return False


def wait(check: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(what)
        time.sleep(0.02)
    return time.monotonic() - start


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kvhandoff-") as tmp:
        path = write_cluster_config(
            Path(tmp),
            n=3,
            engine="sqlite",
            heartbeat_interval_ms=100,
            failure_detection_ms=600,
            hint_replay_rate=args.replay_rate,
            request_timeout_ms=5000,
        )
        cfg = config_mod.load(path)
        ring = Ring(cfg.node_ids, cfg.vnodes)
        with LocalCluster(cfg, path) as cluster:
            cluster.start()
            async with Client.from_config(cfg) as client:
                up_keys = [f"up-{i}".encode() for i in range(args.keys)]
                down_keys = [f"down-{i}".encode() for i in range(args.keys)]

                async def put_up(i: int) -> None:
                    await client.put(up_keys[i], VALUE, w="quorum")

                async def put_down(i: int) -> None:
                    await client.put(down_keys[i], VALUE, w="quorum")

                all_up = await drive(put_up, args.concurrency, total=args.keys)
                cluster.kill(VICTIM)
                detect_s = wait(lambda: all_see(cluster, VICTIM, "down"), 30, "detection")
                degraded = await drive(put_down, args.concurrency, total=args.keys)
            hints = pending_hints(cluster)
            restart_at = time.monotonic()
            cluster.start_node(VICTIM, wait=False)
            first_delivery = None
            while (left := pending_hints(cluster)) > 0:
                if first_delivery is None and left < hints:
                    first_delivery = time.monotonic()
                if time.monotonic() - restart_at > 600:
                    raise TimeoutError("hints were not drained within 600 s")
                await asyncio.sleep(0.01)
            drained_at = time.monotonic()
            first_delivery = first_delivery or drained_at
            drained_s = drained_at - restart_at
            owned = [k for k in down_keys if VICTIM in ring.primaries(k, cfg.n)]
            missing = 0
            async with cluster.admin(VICTIM) as admin:

                async def check(i: int) -> None:
                    nonlocal missing
                    reply = await admin.read_local(owned[i], timeout=10)
                    missing += reply.value != VALUE

                await drive(check, 32, total=len(owned))
    replay_s = drained_at - first_delivery
    return {
        "benchmark": "handoff",
        "machine": machine(),
        "settings": {
            "keys": args.keys,
            "concurrency": args.concurrency,
            "replay_rate_limit": args.replay_rate,
            "nodes": 5,
            "n": 3,
            "w": "quorum",
            "value_bytes": len(VALUE),
        },
        "results": {
            "write_all_up_ops_per_s": round(all_up["ops_per_s"], 1),
            "write_one_down_ops_per_s": round(degraded["ops_per_s"], 1),
            "write_one_down_ratio_to_all_up": round(degraded["ops_per_s"] / all_up["ops_per_s"], 3),
            "write_errors": all_up["errors"] + degraded["errors"],
            "detection_s": round(detect_s, 3),
            "hints_stored": hints,
            "keys_owned_by_returning_node": len(owned),
            "first_delivery_after_restart_s": round(first_delivery - restart_at, 3),
            "replay_s": round(replay_s, 3),
            "replay_hints_per_s": round(hints / replay_s, 1) if replay_s > 0 else None,
            "replay_ratio_to_all_up_writes": round(hints / replay_s / all_up["ops_per_s"], 3)
            if replay_s > 0
            else None,
            "owner_complete_after_restart_s": round(drained_s, 3),
            "owner_missing_keys": missing,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--replay-rate", type=int, default=100_000)
    args = parser.parse_args()
    report = uvloop.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report["results"].items():
            print(f"{name:<34} {value}")
    return 0 if report["results"]["owner_missing_keys"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
