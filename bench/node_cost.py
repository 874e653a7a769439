"""What one call costs the cluster: CPU, context switches and frames per call, on each of
gRPC's two I/O stacks.

Usage: python bench/node_cost.py [--json] [--pairs 3] [--seconds 4] [--concurrency 64]
                                 [--figures quorum_get,quorum_put,...] [--baseline-tree DIR]

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

With ``--baseline-tree DIR`` (a checkout of another commit, say from ``git worktree
add``), a pair is instead one cluster whose nodes run DIR's code (``env -C DIR``: a
node imports kvstore from its working directory) and one running this tree's, both on
the node stack; the client is this tree's in both. That is how a change to the node's
code gets its before/after counts from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, machine, median_of, pair_settings, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.cluster.admin import AdminClient  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.net import grpc_io  # noqa: E402

VALUE = b"x" * 100
KEYS = [f"bench-{i:04d}".encode() for i in range(1000)]
FIGURES = ("quorum_get", "quorum_put", "linearizable_get", "linearizable_put", "one_get")


@dataclass(frozen=True)
class Variant:
    """How one side of a pair starts its nodes."""

    name: str
    experiments: str | None = None  # GRPC_EXPERIMENTS for the nodes; None: the node's own
    tree: Path | None = None  # run the nodes' code from this checkout; None: this tree

    def prefix(self, node_id: str) -> list[str]:
        assert self.tree is not None
        return ["env", "-C", str(self.tree)]


STACKS = (Variant("default", experiments=""), Variant("node"))
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


async def one_cluster(folder: Path, variant: Variant, args: Any) -> dict[str, dict[str, float]]:
    path = write_cluster_config(folder, n=3, request_timeout_ms=5000)
    path.write_text('tls = "off"\n' + path.read_text())  # as bench/vs_etcd.py
    cfg = config_mod.load(path)
    if variant.experiments is not None:  # what the nodes start with: see the docstring
        os.environ[grpc_io.ENV] = variant.experiments
    prefix = variant.prefix if variant.tree is not None else None
    try:
        with LocalCluster(cfg, path, command_prefix=prefix) as cluster:
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
        os.environ.pop(grpc_io.ENV, None)


async def bench(args: Any) -> dict[str, Any]:
    variants = (
        STACKS
        if args.baseline_tree is None
        else (Variant("baseline", tree=args.baseline_tree), Variant("this"))
    )
    first, second = (v.name for v in variants)
    runs: dict[str, list[dict[str, dict[str, float]]]] = {v.name: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="kv-node-cost-") as tmp:
        for pair in range(args.pairs):
            for variant in variants if pair % 2 == 0 else tuple(reversed(variants)):
                folder = Path(tmp) / f"{pair}-{variant.name}"
                folder.mkdir()
                runs[variant.name].append(await one_cluster(folder, variant, args))
    report: dict[str, Any] = {
        "benchmark": "node_cost",
        "machine": machine(),
        "settings": pair_settings(
            args,
            VALUE,
            KEYS,
            node_stack=grpc_io.NODE_EXPERIMENTS,
            baseline_tree=None if args.baseline_tree is None else str(args.baseline_tree),
        ),
        "figures": {},
    }
    for figure in args.figures:
        by = {name: median_of([run[figure] for run in runs[name]]) for name in runs}
        ratio = {
            k: round(by[second][k] / by[first][k], 3)
            for k in ("ops_per_s", "node_cpu_us_per_call", "node_switches_per_call")
            if by[first][k]
        }
        report["figures"][figure] = {**by, f"{second}_over_{first}": ratio}
    report["pairs"] = runs
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--figures", default=",".join(FIGURES))
    parser.add_argument(
        "--baseline-tree", type=Path, help="a checkout whose nodes are the baseline"
    )
    args = parser.parse_args()
    args.figures = [f for f in args.figures.split(",") if f]
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown or args.pairs < 1 or args.seconds <= 0 or args.concurrency < 1:
        parser.error(f"unknown figures {unknown}" if unknown else "counts must be positive")
    if not Path("/proc/self/task").is_dir():
        print(json.dumps({"benchmark": "node_cost", "skipped": "needs Linux's /proc"}))
        return 0
    tree = args.baseline_tree
    if tree is not None:
        if not (tree / "kvstore" / "__main__.py").is_file():
            parser.error(f"--baseline-tree {tree}: not a kvstore checkout (no kvstore/__main__.py)")
        if shutil.which("env") is None:
            parser.error("--baseline-tree needs env(1) to start nodes in that tree")
        args.baseline_tree = tree.resolve()
    if grpc_io.ENV in os.environ:
        parser.error(f"unset {grpc_io.ENV}: this benchmark sets it for each cluster's nodes")
    report = uvloop.run(bench(args))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
