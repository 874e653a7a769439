"""Throughput and latency of a local 5-node cluster against the gRPC echo ceiling.

Usage: python bench/throughput.py [--json] [--seconds 3] [--rounds 3] [--concurrency 64]

In one run on one machine it measures (1) a plain gRPC unary echo between this process
and a separate server process: the ceiling for any gRPC service here; (2) the cluster's
put and get throughput and p50/p99 latency at one, quorum and all, with the same client
concurrency and 100-byte values. Each figure is the median of ``--rounds`` rounds, and
each is given as a ratio of the echo ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.net.channel import SERVER_OPTIONS, open_channel  # noqa: E402
from kvstore.pb import kvstore_pb2 as pb  # noqa: E402
from kvstore.pb import kvstore_pb2_grpc as pb_grpc  # noqa: E402

VALUE = b"x" * 100


class _Echo(pb_grpc.AdminServicer):
    """Only Echo matters here; Status answers so the server is a complete Admin service."""

    async def Status(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StatusReply:
        return pb.StatusReply(node="echo")

    async def Echo(
        self, request: pb.EchoMessage, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EchoMessage:
        return request


async def serve_echo(port: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_AdminServicer_to_server(_Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def drive(
    op: Callable[[int], Awaitable[Any]], seconds: float, concurrency: int
) -> dict[str, float]:
    """Run ``op`` from ``concurrency`` workers for ``seconds``; ops/s and latency (ms)."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        i = w
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                await op(i)
            except Exception:
                errors += 1
            else:
                latencies.append(time.perf_counter() - start)
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "errors": errors,
    }


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}


async def bench(args: argparse.Namespace, echo_port: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # --- the ceiling: unary echo to a separate process
    channel = open_channel(f"127.0.0.1:{echo_port}")
    stub = pb_grpc.AdminStub(channel)
    message = pb.EchoMessage(payload=VALUE)

    async def echo_op(i: int) -> None:
        await stub.Echo(message, timeout=5)

    await drive(echo_op, 0.5, args.concurrency)  # warm-up
    results["echo"] = median_of(
        [await drive(echo_op, args.seconds, args.concurrency) for _ in range(args.rounds)]
    )
    await channel.close(None)

    # --- the cluster
    with tempfile.TemporaryDirectory(prefix="kvbench-") as tmp:
        cfg_path = Path(tmp) / "cluster.toml"
        ports = free_ports(5)
        lines = ["[cluster]", 'name = "bench"', "n = 3", f'engine = "{args.engine}"']
        lines += ['run_dir = "run"', "request_timeout_ms = 5000"]
        for i, p in enumerate(ports, 1):
            lines += ["[[nodes]]", f'id = "n{i}"', f'address = "127.0.0.1:{p}"']
            lines += [f'data_dir = "data/n{i}"']
        cfg_path.write_text("\n".join(lines) + "\n")
        cfg = config_mod.load(cfg_path)
        with LocalCluster(cfg, cfg_path) as cluster:
            cluster.start()
            async with Client.from_config(cfg) as client:
                keys = [f"bench-{i}".encode() for i in range(10_000)]
                for level in ("one", "quorum", "all"):

                    async def put_op(i: int, level: str = level) -> None:
                        await client.put(keys[i % len(keys)], VALUE, w=level)

                    async def get_op(i: int, level: str = level) -> None:
                        await client.get(keys[i % len(keys)], r=level)

                    await drive(put_op, 0.5, args.concurrency)  # warm-up, fills keys
                    for name, op in (("put", put_op), ("get", get_op)):
                        results[f"{name}_{level}"] = median_of(
                            [
                                await drive(op, args.seconds, args.concurrency)
                                for _ in range(args.rounds)
                            ]
                        )
    ceiling = results["echo"]["ops_per_s"]
    for figures in results.values():
        figures["ratio_to_echo"] = round(figures["ops_per_s"] / ceiling, 3)
    return {
        "benchmark": "throughput",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "concurrency": args.concurrency,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "value_bytes": len(VALUE),
            "engine": args.engine,
            "nodes": 5,
            "n": 3,
        },
        "results": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engine", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        uvloop.run(serve_echo(args.serve_echo))
        return 0
    (port,) = free_ports(1)
    echo = subprocess.Popen(
        [sys.executable, __file__, "--serve-echo", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        report = uvloop.run(bench(args, port))
    finally:
        echo.kill()
        echo.wait()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, figures in report["results"].items():
            print(
                f"{name:<11} {figures['ops_per_s']:>8.0f} ops/s  p50 {figures['p50_ms']:.2f} ms"
                f"  p99 {figures['p99_ms']:.2f} ms  x{figures['ratio_to_echo']:.2f} of echo"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
