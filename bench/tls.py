"""What mutual TLS costs: quorum put and get on a 5-node cluster with mTLS and without.

Usage: python bench/tls.py [--json] [--seconds 3] [--pairs 3] [--concurrency 64]

Both clusters run in the same process run, side by side (same machine, same moment):
one as ``kvstore cluster up`` makes it (mutual TLS), one with ``tls = "off"``. Each pair
measures quorum put, then quorum get, on one and then the other (the order alternates
between pairs so neither always goes first); the figures are the medians of the pairs
and the ratios TLS / plaintext. It also times a new connection's first call (the
handshake) both ways, which is what a client pays once per coordinator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, machine, median_of, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.cluster.admin import AdminClient  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.net.channel import Dialer  # noqa: E402

VALUE = b"x" * 100
KEYS = [f"tls-{i}".encode() for i in range(1_000)]


async def quorum_round(client: Client, op: str, args: argparse.Namespace) -> dict[str, float]:
    async def put(i: int) -> None:
        await client.put(KEYS[i % len(KEYS)], VALUE, w="quorum")

    async def get(i: int) -> None:
        await client.get(KEYS[i % len(KEYS)], r="quorum")

    return await drive(put if op == "put" else get, args.concurrency, seconds=args.seconds)


async def first_call_ms(cfg: config_mod.ClusterConfig, samples: int) -> float:
    """Median time to open a new channel and make one call on it (the handshake)."""
    dialer = Dialer.for_client(cfg)
    node = cfg.nodes[0]
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        async with AdminClient(cfg, node.id, dialer=dialer) as admin:
            await admin.echo(VALUE, timeout=5)
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 3)


async def bench(args: argparse.Namespace, clusters: dict[str, config_mod.ClusterConfig]) -> Any:
    rounds: dict[str, list[dict[str, float]]] = {}
    clients = {name: Client.from_config(cfg) for name, cfg in clusters.items()}
    try:
        for client in clients.values():  # warm-up: connections open, keys written
            for i in range(len(KEYS)):
                await client.put(KEYS[i], VALUE, w="all")
        for pair in range(args.pairs):
            order = ["mtls", "plaintext"] if pair % 2 == 0 else ["plaintext", "mtls"]
            for op in ("put", "get"):
                for name in order:
                    figures = await quorum_round(clients[name], op, args)
                    rounds.setdefault(f"{op}_quorum_{name}", []).append(figures)
    finally:
        for client in clients.values():
            await client.close()
    results: dict[str, Any] = {key: median_of(value) for key, value in rounds.items()}
    for op in ("put", "get"):
        tls, plain = results[f"{op}_quorum_mtls"], results[f"{op}_quorum_plaintext"]
        tls["ratio_to_plaintext"] = round(tls["ops_per_s"] / plain["ops_per_s"], 3)
        pair_ratios = [
            t["ops_per_s"] / p["ops_per_s"]
            for t, p in zip(
                rounds[f"{op}_quorum_mtls"], rounds[f"{op}_quorum_plaintext"], strict=True
            )
        ]
        tls["pair_ratios"] = [round(r, 3) for r in pair_ratios]
    results["first_call_ms"] = {
        name: await first_call_ms(cfg, args.handshakes) for name, cfg in clusters.items()
    }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--handshakes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvbench-tls-") as tmp:
        configs: dict[str, config_mod.ClusterConfig] = {}
        clusters: list[LocalCluster] = []
        try:
            for name in ("mtls", "plaintext"):
                folder = Path(tmp) / name
                folder.mkdir()
                path = write_cluster_config(folder, n=3, request_timeout_ms=5000)
                if name == "plaintext":
                    path.write_text(path.read_text() + '\n[tls]\nmode = "off"\n')
                cfg = config_mod.load(path)
                cluster = LocalCluster(cfg, path)
                clusters.append(cluster)
                cluster.start()
                configs[name] = cfg
            results = uvloop.run(bench(args, configs))
        finally:
            for cluster in clusters:
                cluster.stop()
    report = {
        "benchmark": "tls",
        "machine": machine(),
        "settings": {
            "concurrency": args.concurrency,
            "seconds_per_round": args.seconds,
            "pairs": args.pairs,
            "value_bytes": len(VALUE),
            "nodes": 5,
            "n": 3,
            "transport": "session",
        },
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, figures in results.items():
            print(name, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
