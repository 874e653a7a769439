"""What one call costs the cluster: CPU, context switches and frames per call, on each of
gRPC's two I/O stacks.

Usage: python bench/node_cost.py [--json] [--pairs 3] [--seconds 4] [--concurrency 64]
                                 [--figures quorum_get,quorum_put,...]

Throughput at 64 in flight on 2 cores is bound by what each call costs every process it
touches, and this machine's speed drifts by up to 30% within minutes, so ops/s alone
hides a 15% change. This counts the cost itself, from ``/proc`` (Linux only):

- node CPU per call: user + system time of the 5 node processes, summed;
- client CPU per call: this process's, the driving client;
- context switches per call: voluntary and involuntary, every thread of every node;
- replica frames per call: the ``replica.frames_out`` counters of every node.

A *pair* is one 5-node cluster (N = 3, SQLite, plaintext as ``bench/vs_etcd.py``) on
gRPC's default EventEngine stack (``GRPC_EXPERIMENTS`` set empty, an operator's choice
that ``kvstore.net.grpc_io`` keeps) and one on the stack kvstore gives its nodes, started
one after the other (which goes first alternates), each driven through every figure. The
result is each stack's median over the pairs, and the ratio node stack / default.
"""

from __future__ import annotations

import argparse
import json
import os
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
from kvstore.net import grpc_io  # noqa: E402

VALUE = b"x" * 100
KEYS = [f"bench-{i:04d}".encode() for i in range(1000)]
FIGURES = ("quorum_get", "quorum_put", "linearizable_get", "linearizable_put", "one_get")
STACKS = {"default": "", "node": grpc_io.NODE_EXPERIMENTS}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def context_switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        lines = status.splitlines()
        total += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return total


async def frames_out(admins: list[AdminClient]) -> int:
    return sum([(await a.status()).counters["replica.frames_out"] for a in admins])


async def measure(
    client: Client, admins: list[AdminClient], pids: list[int], figure: str, args: Any
) -> dict[str, float]:
    level, op = figure.rsplit("_", 1)
    if op == "put":

        async def call(i: int) -> None:
            await client.put(KEYS[i % len(KEYS)], VALUE, consistency=level)
    else:

        async def call(i: int) -> None:
            await client.get(KEYS[i % len(KEYS)], consistency=level)

    frames0 = await frames_out(admins)
    nodes0, switches0 = sum(map(cpu_seconds, pids)), sum(map(context_switches, pids))
    client0 = cpu_seconds(os.getpid())
    began = time.perf_counter()
    result = await drive(call, args.concurrency, seconds=args.seconds)
    elapsed = time.perf_counter() - began
    nodes1, switches1 = sum(map(cpu_seconds, pids)), sum(map(context_switches, pids))
    client1 = cpu_seconds(os.getpid())
    frames1 = await frames_out(admins)
    calls = max(1.0, result["ops_per_s"] * elapsed)
    return {
        "ops_per_s": round(result["ops_per_s"]),
        "p50_ms": round(result["p50_ms"], 2),
        "p99_ms": round(result["p99_ms"], 2),
        "errors": result["errors"],
        "node_cpu_us_per_call": round((nodes1 - nodes0) / calls * 1e6),
        "client_cpu_us_per_call": round((client1 - client0) / calls * 1e6),
        "node_switches_per_call": round((switches1 - switches0) / calls, 2),
        "frames_per_call": round((frames1 - frames0) / calls, 3),
        "cpu_busy": round((nodes1 - nodes0 + client1 - client0) / elapsed, 2),
    }


async def one_cluster(folder: Path, stack: str, args: Any) -> dict[str, dict[str, float]]:
    path = write_cluster_config(folder, n=3, request_timeout_ms=5000)
    path.write_text('tls = "off"\n' + path.read_text())  # as bench/vs_etcd.py
    cfg = config_mod.load(path)
    os.environ[grpc_io.ENV] = STACKS[stack]  # what the nodes start with: see the docstring
    try:
        with LocalCluster(cfg, path) as cluster:
            cluster.start()
            pids = [node.pid for node in cluster.nodes.values()]
            admins = [AdminClient(cfg, node_id) for node_id in cluster.nodes]
            try:
                async with Client.from_config(cfg) as client:

                    async def fill(i: int) -> None:
                        await client.put(KEYS[i % len(KEYS)], VALUE, consistency="quorum")

                    await drive(fill, args.concurrency, total=2 * len(KEYS))  # warm, fill
                    return {f: await measure(client, admins, pids, f, args) for f in args.figures}
            finally:
                for admin in admins:
                    await admin.close()
    finally:
        del os.environ[grpc_io.ENV]


async def bench(args: Any) -> dict[str, Any]:
    runs: dict[str, list[dict[str, dict[str, float]]]] = {stack: [] for stack in STACKS}
    with tempfile.TemporaryDirectory(prefix="kv-node-cost-") as tmp:
        for pair in range(args.pairs):
            order = list(STACKS) if pair % 2 == 0 else list(reversed(STACKS))
            for stack in order:
                folder = Path(tmp) / f"{pair}-{stack}"
                folder.mkdir()
                runs[stack].append(await one_cluster(folder, stack, args))
    report: dict[str, Any] = {
        "benchmark": "node_cost",
        "machine": machine(),
        "settings": {
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "pairs": args.pairs,
            "value_bytes": len(VALUE),
            "keys": len(KEYS),
            "node_stack": grpc_io.NODE_EXPERIMENTS,
        },
        "figures": {},
    }
    for figure in args.figures:
        by_stack = {stack: median_of([run[figure] for run in runs[stack]]) for stack in STACKS}
        ratio = {
            k: round(by_stack["node"][k] / by_stack["default"][k], 3)
            for k in ("ops_per_s", "node_cpu_us_per_call", "node_switches_per_call")
            if by_stack["default"][k]
        }
        report["figures"][figure] = {**by_stack, "node_over_default": ratio}
    report["pairs"] = runs
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--figures", default=",".join(FIGURES))
    args = parser.parse_args()
    args.figures = [f for f in args.figures.split(",") if f]
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown or args.pairs < 1 or args.seconds <= 0 or args.concurrency < 1:
        parser.error(f"unknown figures {unknown}" if unknown else "counts must be positive")
    if not Path("/proc/self/task").is_dir():
        print(json.dumps({"benchmark": "node_cost", "skipped": "needs Linux's /proc"}))
        return 0
    if grpc_io.ENV in os.environ:
        parser.error(f"unset {grpc_io.ENV}: this benchmark sets it for each cluster's nodes")
    report = uvloop.run(bench(args))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
