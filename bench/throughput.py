"""Throughput and latency of a local 5-node cluster against the gRPC echo ceiling.

Usage: python bench/throughput.py [--json] [--seconds 3] [--rounds 3] [--concurrency 64]

In one run on one machine it measures (1) a plain gRPC unary echo between this process
and a separate server process: the ceiling for any gRPC service here; (2) the cluster's
put and get throughput and p50/p99 latency at one, quorum and all, with the same client
concurrency and 100-byte values, through client sessions (the client's default: calls
multiplexed on one stream per coordinator); (3) quorum put and get again through unary
calls, the baseline for what sessions gain. Each figure is the median of ``--rounds``
rounds, and each is given as a ratio of the echo ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, free_ports, machine, median_of, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.client.aio import Transport  # noqa: E402
from kvstore.cluster.admin import AdminClient  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.net.channel import SERVER_OPTIONS  # noqa: E402
from kvstore.pb import kvstore_pb2 as pb  # noqa: E402

VALUE = b"x" * 100


async def _echo(
    request: pb.EchoMessage, context: grpc.aio.ServicerContext[Any, Any]
) -> pb.EchoMessage:
    return request


async def serve_echo(port: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    # The bare Admin.Echo method and nothing else: the plainest unary gRPC service.
    handler = grpc.method_handlers_generic_handler(
        "kvstore.v1.Admin",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                _echo,
                request_deserializer=pb.EchoMessage.FromString,
                response_serializer=pb.EchoMessage.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


LEVELS = ("one", "quorum", "all")


async def _levels(client: Client, level: str, args: argparse.Namespace) -> dict[str, Any]:
    """put and get at one level: median of the rounds, after a warm-up that fills keys."""
    keys = [f"bench-{i}".encode() for i in range(10_000)]

    async def put_op(i: int) -> None:
        await client.put(keys[i % len(keys)], VALUE, w=level)

    async def get_op(i: int) -> None:
        await client.get(keys[i % len(keys)], r=level)

    await drive(put_op, args.concurrency, seconds=0.5)
    out = {}
    for name, op in (("put", put_op), ("get", get_op)):
        rounds = [
            await drive(op, args.concurrency, seconds=args.seconds) for _ in range(args.rounds)
        ]
        out[f"{name}_{level}"] = median_of(rounds)
    return out


async def bench(args: argparse.Namespace, echo_port: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # --- the ceiling: unary echo to a separate process
    async with AdminClient.at(f"127.0.0.1:{echo_port}") as echo:  # plaintext

        async def echo_op(i: int) -> None:
            await echo.echo(VALUE, timeout=5)

        await drive(echo_op, args.concurrency, seconds=0.5)  # warm-up
        results["echo"] = median_of(
            [
                await drive(echo_op, args.concurrency, seconds=args.seconds)
                for _ in range(args.rounds)
            ]
        )

    # --- the cluster, through client sessions (the default), then through unary calls
    with tempfile.TemporaryDirectory(prefix="kvbench-") as tmp:
        cfg_path = write_cluster_config(Path(tmp), n=3, engine=args.engine, request_timeout_ms=5000)
        cfg = config_mod.load(cfg_path)
        with LocalCluster(cfg, cfg_path) as cluster:
            cluster.start()
            plan: tuple[tuple[Transport, tuple[str, ...]], ...] = (
                ("session", LEVELS),
                ("unary", ("quorum",)),
            )
            for transport, levels in plan:
                suffix = "" if transport == "session" else "_unary"
                async with Client.from_config(cfg, transport=transport) as client:
                    for level in levels:
                        for name, figures in (await _levels(client, level, args)).items():
                            results[f"{name}{suffix}"] = figures
                    if transport == "session":
                        calls = sum(s.calls_sent for s in client._sessions.values())
                        batches = sum(s.batches_sent for s in client._sessions.values())
                        batching = round(calls / max(batches, 1), 2)
    ceiling = results["echo"]["ops_per_s"]
    for figures in results.values():
        figures["ratio_to_echo"] = round(figures["ops_per_s"] / ceiling, 3)
    for op in ("put", "get"):
        session, unary = results[f"{op}_quorum"], results[f"{op}_quorum_unary"]
        session["ratio_to_unary"] = round(session["ops_per_s"] / unary["ops_per_s"], 2)
    return {
        "benchmark": "throughput",
        "machine": machine(),
        "settings": {
            "concurrency": args.concurrency,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "value_bytes": len(VALUE),
            "engine": args.engine,
            "nodes": 5,
            "n": 3,
            "client_calls_per_session_message": batching,
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
