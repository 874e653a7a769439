"""kvstore against etcd, the store a user would pick instead, on the same machine.

Usage: python bench/vs_etcd.py [--json] [--pairs 3] [--seconds 3] [--concurrency 64]

In one run: a 5-member etcd on loopback (Debian's ``etcd-server``; ``scripts/setup.sh``
installs it as root; without it the benchmark says so and exits 0 with no figures) and
a 5-node kvstore (N = 3, SQLite), both plaintext, both driven by the same ``drive`` loop
of grpc.aio calls: ``--concurrency`` in flight, 100-byte values over 1,000 keys, back to
back. A *pair* is one round of every figure on both stores; the result is the median
over ``--pairs`` pairs, with each pair's ratios.

- etcd put: every etcd write is linearizable (Raft). etcd get: a linearizable Range
  (``serializable`` false, the default). Calls go round-robin to the 5 members, as a
  client that knows every endpoint spreads them (followers forward to the leader).
- kvstore: put and get at ``consistency="linearizable"`` (ABD) and at quorum, through
  the client's default transport (sessions, routed to a key's primary).
- The etcd side's requests are encoded by hand (two fields each) and its replies not
  decoded, which favours etcd slightly: the kvstore side runs its full client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, free_ports, machine, pair_settings, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402

ETCD = shutil.which("etcd")
VALUE = b"x" * 100
KEYS = [f"bench-{i:04d}".encode() for i in range(1000)]
MEMBERS = 5


def _field(number: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (keys and values are far below 128 bytes)."""
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


def put_request(key: bytes, value: bytes) -> bytes:
    return _field(1, key) + _field(2, value)  # etcdserverpb.PutRequest{key, value}


def range_request(key: bytes) -> bytes:
    return _field(1, key)  # etcdserverpb.RangeRequest{key}; serializable = false


def _raw(b: bytes) -> bytes:
    return b


class Etcd:
    """A 5-member etcd cluster on loopback, stopped by PID."""

    def __init__(self, folder: Path) -> None:
        assert ETCD is not None
        ports = free_ports(2 * MEMBERS)
        self.clients = [f"127.0.0.1:{p}" for p in ports[:MEMBERS]]
        peers = [f"http://127.0.0.1:{p}" for p in ports[MEMBERS:]]
        cluster = ",".join(f"m{i}={peers[i]}" for i in range(MEMBERS))
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(MEMBERS):
            log = (folder / f"etcd-m{i}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        ETCD,
                        f"--name=m{i}",
                        f"--data-dir={folder / f'm{i}'}",
                        f"--listen-client-urls=http://{self.clients[i]}",
                        f"--advertise-client-urls=http://{self.clients[i]}",
                        f"--listen-peer-urls={peers[i]}",
                        f"--initial-advertise-peer-urls={peers[i]}",
                        f"--initial-cluster={cluster}",
                        "--initial-cluster-state=new",
                        "--initial-cluster-token=kvstore-bench",
                    ],
                    stdout=log,
                    stderr=log,
                )
            )

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def etcd_figures(etcd: Etcd, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    channels = [grpc.aio.insecure_channel(address) for address in etcd.clients]
    try:
        puts = [c.unary_unary("/etcdserverpb.KV/Put", _raw, _raw) for c in channels]
        ranges = [c.unary_unary("/etcdserverpb.KV/Range", _raw, _raw) for c in channels]
        end = time.monotonic() + 30
        while True:  # until the cluster has a leader and takes writes
            try:
                await puts[0](put_request(KEYS[0], VALUE), timeout=2)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.2)

        async def put_op(i: int) -> None:
            await puts[i % MEMBERS](put_request(KEYS[i % len(KEYS)], VALUE), timeout=5)

        async def get_op(i: int) -> None:
            await ranges[i % MEMBERS](range_request(KEYS[i % len(KEYS)]), timeout=5)

        await drive(put_op, args.concurrency, total=len(KEYS))  # every key exists
        return {
            "put": await drive(put_op, args.concurrency, seconds=args.seconds),
            "get": await drive(get_op, args.concurrency, seconds=args.seconds),
        }
    finally:
        for c in channels:
            await c.close(None)


async def kvstore_figures(cfg: Any, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with Client.from_config(cfg) as client:

        def ops(**level: Any) -> tuple[Any, Any]:
            async def put_op(i: int) -> None:
                await client.put(KEYS[i % len(KEYS)], VALUE, **level)

            async def get_op(i: int) -> None:
                await client.get(KEYS[i % len(KEYS)], **level)

            return put_op, get_op

        lin_put, lin_get = ops(consistency="linearizable")
        q_put, q_get = ops(consistency="quorum")
        await drive(q_put, args.concurrency, total=len(KEYS))  # every key exists
        out["linearizable_put"] = await drive(lin_put, args.concurrency, seconds=args.seconds)
        out["linearizable_get"] = await drive(lin_get, args.concurrency, seconds=args.seconds)
        out["quorum_put"] = await drive(q_put, args.concurrency, seconds=args.seconds)
        out["quorum_get"] = await drive(q_get, args.concurrency, seconds=args.seconds)
    return out


# kvstore figure -> the etcd figure it is held against (the targets)
AGAINST = {
    "linearizable_put": ("put", 0.6),
    "linearizable_get": ("get", 0.8),
    "quorum_put": ("put", 1.0),
    "quorum_get": ("get", 1.0),
}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kvetcd-") as tmp:
        folder = Path(tmp)
        etcd = Etcd(folder)
        try:
            (folder / "kv").mkdir()
            cfg_path = write_cluster_config(folder / "kv", n=3, request_timeout_ms=5000)
            # plaintext, as the etcd side: TLS costs kvstore ~8% (bench/tls.py)
            cfg_path.write_text('tls = "off"\n' + cfg_path.read_text())
            cfg = config_mod.load(cfg_path)
            with LocalCluster(cfg, cfg_path) as cluster:
                cluster.start()
                for _ in range(args.pairs):
                    e = await etcd_figures(etcd, args)
                    k = await kvstore_figures(cfg, args)
                    ratios = {
                        name: round(k[name]["ops_per_s"] / e[other]["ops_per_s"], 3)
                        for name, (other, _) in AGAINST.items()
                    }
                    pairs.append({"etcd": e, "kvstore": k, "ratios": ratios})
        finally:
            etcd.stop()

    def med(side: str, name: str) -> dict[str, float]:
        keys = pairs[0][side][name]
        return {key: round(statistics.median(p[side][name][key] for p in pairs), 3) for key in keys}

    ratios = {name: statistics.median(p["ratios"][name] for p in pairs) for name in AGAINST}
    return {
        "benchmark": "vs_etcd",
        "machine": machine(),
        "settings": pair_settings(args, VALUE, KEYS, etcd=args.etcd_version),
        "etcd": {name: med("etcd", name) for name in ("put", "get")},
        "kvstore": {name: med("kvstore", name) for name in AGAINST},
        "ratios": {
            name: {"median": ratios[name], "target": target, "met": ratios[name] >= target}
            for name, (_, target) in AGAINST.items()
        },
        "pairs": [p["ratios"] for p in pairs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if ETCD is None:
        skipped = {
            "benchmark": "vs_etcd",
            "skipped": "no etcd binary (Debian's etcd-server; "
            "scripts/setup.sh installs it as root)",
        }
        print(json.dumps(skipped))
        return 0
    version = subprocess.run([ETCD, "--version"], capture_output=True, text=True, check=False)
    args.etcd_version = version.stdout.splitlines()[0] if version.stdout else "?"
    report = uvloop.run(bench(args))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
