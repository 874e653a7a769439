"""The ``kvstore`` command line.

Exit status: 0 success; 1 the operation failed (the store said no, or a node/cluster
error); 2 bad usage or bad input (argparse's convention), with a one-line reason on
stderr. Subcommands delegate to the library; no logic lives here that a Python user
could not reach through the API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvstore import config as config_mod
from kvstore.errors import ConfigError, InvalidArgument, KVError

DEFAULT_CONFIG = "cluster.toml"


def _level(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="cluster config file (default: cluster.toml)"
    )


def _add_tls_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (default: the config's [tls] client certificate)")
    group.add_argument("--ca", dest="tls_ca", type=Path, help="the cluster's CA certificate")
    group.add_argument("--cert", dest="tls_cert", type=Path, help="this client's certificate")
    group.add_argument("--key", dest="tls_key", type=Path, help="this client's private key")


def _add_call_options(parser: argparse.ArgumentParser, *, read: bool) -> None:
    _add_config(parser)
    _add_tls_options(parser)
    parser.add_argument(
        "--node",
        action="append",
        metavar="HOST:PORT",
        help="talk to this node instead of the config's nodes (repeatable)",
    )
    parser.add_argument("--consistency", help="preset: one | quorum | all | linearizable")
    parser.add_argument(
        "--r" if read else "--w",
        dest="level",
        type=_level,
        metavar="N|LEVEL",
        help=f"{'read' if read else 'write'} replicas: 1..N or one|two|three|quorum|all",
    )
    sloppy = parser.add_mutually_exclusive_group()
    sloppy.add_argument("--sloppy", dest="sloppy", action="store_const", const=True)
    sloppy.add_argument("--strict", dest="sloppy", action="store_const", const=False)
    if read:
        parser.add_argument("--read-repair", choices=("off", "async", "blocking"))
    parser.add_argument("--timeout", type=float, help="seconds")
    parser.add_argument("--trace", action="store_true", help="show what every replica answered")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvstore", description="A Dynamo-style tunable-quorum key-value store."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node = sub.add_parser("node", help="run one node in the foreground")
    node.add_argument("--id", required=True, help="this node's id in the config")
    _add_config(node)
    node.add_argument(
        "--enable-faults",
        action="store_true",
        help="allow fault injection (SetFaults, lying disk, clock offsets): tests only",
    )
    node.add_argument(
        "--clock-offset-ms",
        type=int,
        default=0,
        help="skew this node's clock (a fault: needs --enable-faults)",
    )
    node.add_argument(
        "--join",
        action="store_true",
        help="a node new to a running cluster: it learns the ring from the cluster "
        "(kvstore cluster apply adds it) instead of starting one from the config",
    )
    node.set_defaults(func=cmd_node)

    from kvstore.security.cli import register as register_certs

    register_certs(sub)

    cluster = sub.add_parser("cluster", help="start, inspect or stop a local cluster")
    cluster_sub = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, helptext in (
        ("up", "start every node in the background and wait until all answer"),
        ("status", "each node's address, PID, health and counters"),
        ("down", "stop every node of the local cluster"),
        ("plan", "what making the running cluster match the config would move (read-only)"),
        ("apply", "make the running cluster's membership the config's (add, remove nodes)"),
    ):
        p = cluster_sub.add_parser(action, help=helptext)
        _add_config(p)
        if action in ("status", "plan"):
            p.add_argument("--json", action="store_true", help="print JSON")
        if action in ("status", "plan", "apply"):
            _add_tls_options(p)
        if action == "apply":
            p.add_argument(
                "--rate", type=float, default=0.0, metavar="KEYS_PER_S",
                help="throttle streaming to this many keys per second per stream (0: none)",
            )  # fmt: skip
            p.add_argument(
                "--streams", type=int, default=1, metavar="K", choices=range(1, 65),
                help="source-to-target streams pulled at once (default 1: on a small "
                "machine more streams raise client latency far more than the rate)",
            )  # fmt: skip
        if action in ("plan", "apply"):
            p.add_argument(
                "--dead",
                action="append",
                default=[],
                metavar="ID",
                help="a member that is gone for good: never a source (repeatable)",
            )
        p.set_defaults(func=cmd_cluster)

    put = sub.add_parser("put", help="write a value")
    put.add_argument("key")
    put.add_argument("value")
    _add_call_options(put, read=False)
    put.set_defaults(func=cmd_put)

    get = sub.add_parser("get", help="read a value")
    get.add_argument("key")
    _add_call_options(get, read=True)
    get.set_defaults(func=cmd_get)

    delete = sub.add_parser("delete", help="delete a key (writes a tombstone)")
    delete.add_argument("key")
    _add_call_options(delete, read=False)
    delete.set_defaults(func=cmd_delete)

    repair = sub.add_parser(
        "repair", help="run one anti-entropy round on every node (or one) and report it"
    )
    repair.add_argument("--node", metavar="ID", help="repair only from this node (with its peers)")
    _add_config(repair)
    repair.add_argument("--json", action="store_true", help="print JSON")
    _add_tls_options(repair)
    repair.set_defaults(func=cmd_repair)

    demo = sub.add_parser("demo", help="a guided tour: a 5-node cluster and per-call consistency")
    _add_config(demo)
    demo.set_defaults(func=cmd_demo)

    from kvstore.harness.cli import register as register_test

    register_test(sub)
    from kvstore.sim.cli import register as register_sim

    register_sim(sub)
    from kvstore.cluster.predict import register as register_predict

    register_predict(sub)
    try:
        from kvstore.checker.cli import register as register_check
    except ImportError:  # the checker is optional for a store-only install
        pass
    else:
        register_check(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except (ConfigError, InvalidArgument) as exc:
        print(f"kvstore: {exc}", file=sys.stderr)
        return 2
    except KVError as exc:
        kind = "definite" if exc.definite else "indefinite"
        print(f"kvstore: {type(exc).__name__} ({kind}): {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------------- commands


def cmd_node(args: argparse.Namespace) -> int:
    from kvstore.net import grpc_io

    if not grpc_io.chosen(os.environ):
        # grpc in this process was imported on its default I/O stack: start again with
        # the node's (kvstore.net.grpc_io says why); exec keeps the PID and arguments
        argv = [sys.executable, *sys.orig_argv[1:]]
        os.execve(sys.executable, argv, grpc_io.node_environment(os.environ))

    from kvstore.server.main import run

    cfg = config_mod.load(args.config)
    cfg.node(args.id)  # a clear error for an unknown id, before anything starts
    if args.clock_offset_ms and not args.enable_faults:
        raise InvalidArgument("--clock-offset-ms is a fault: it needs --enable-faults")
    run(
        cfg,
        args.id,
        clock_offset_us=args.clock_offset_ms * 1000,
        enable_faults=args.enable_faults,
        join=args.join,
    )
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from kvstore.cluster import commands

    cfg = config_mod.load(args.config)
    if args.action == "up":
        return commands.up(cfg, Path(args.config))
    if args.action == "down":
        return commands.down(cfg, Path(args.config))
    if args.action == "plan":
        from kvstore.cluster.plan import run_plan

        return run_plan(cfg, _admin_dialer(args, cfg), dead=args.dead, as_json=args.json)
    if args.action == "apply":
        from kvstore.cluster.apply import run_apply
        from kvstore.cluster.local import LocalCluster

        local = LocalCluster(cfg, Path(args.config))
        local.load_state()
        return run_apply(
            cfg,
            local,
            _admin_dialer(args, cfg),
            dead=args.dead,
            rate_keys_s=args.rate,
            parallel=args.streams,
        )
    return commands.show_status(cfg, Path(args.config), as_json=args.json, tls=tls_files(args, cfg))


def _client_args(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.consistency is not None:
        options["consistency"] = args.consistency
    if args.sloppy is not None:
        options["sloppy"] = args.sloppy
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if getattr(args, "read_repair", None) is not None:
        options["read_repair"] = args.read_repair
    return options


def tls_files(args: argparse.Namespace, cfg: config_mod.ClusterConfig | None) -> Any:
    """The client's TLS files: --ca/--cert/--key over the config's; None with TLS off."""
    from kvstore.security.tls import TLSFiles, client_files

    given = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(given):
        if not all(given):
            raise InvalidArgument("give --ca, --cert and --key together")
        return TLSFiles(args.tls_ca, args.tls_cert, args.tls_key)
    if cfg is None:
        cfg = config_mod.load(args.config)
    return client_files(cfg)


def _admin_dialer(args: argparse.Namespace, cfg: config_mod.ClusterConfig) -> Any:
    """Dials the Admin service as --ca/--cert/--key's holder, else as the config's client."""
    from kvstore.net.channel import Dialer

    return Dialer(tls_files(args, cfg))


def _client(args: argparse.Namespace) -> Any:
    from kvstore.client import Client

    if args.node:
        given = (args.tls_ca, args.tls_cert, args.tls_key)
        cfg = None if any(given) else config_mod.load(args.config)
        return Client(args.node, tls=tls_files(args, cfg))
    cfg = config_mod.load(args.config)
    return Client.from_config(cfg, tls=tls_files(args, cfg))


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def cmd_put(args: argparse.Namespace) -> int:
    return _write(args, args.value)


def cmd_delete(args: argparse.Namespace) -> int:
    return _write(args, None)


def _write(args: argparse.Namespace, value: str | None) -> int:
    async def go() -> int:
        async with _client(args) as client:
            options = _client_args(args)
            if args.level is not None:
                options["w"] = args.level
            if value is None:
                result = await client.delete(args.key, trace=args.trace, **options)
            else:
                result = await client.put(args.key, value, trace=args.trace, **options)
            done = "deleted" if value is None else "ok"
            print(f"{done} ts={_fmt_ts(result.ts)} coordinator={result.coordinator}")
            _print_acks(result.replicas)
            return 0

    return int(_run(go()))


def cmd_get(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _client(args) as client:
            options = _client_args(args)
            if args.level is not None:
                options["r"] = args.level
            # trace only on request: it makes the coordinator wait for every replica
            result = await client.get(args.key, trace=True, **options) if args.trace else None
            value = result.value if result else await client.get(args.key, **options)
            if value is None:
                print("(not found)", file=sys.stderr)
            else:
                sys.stdout.write(value.decode("utf-8", errors="backslashreplace") + "\n")
            if result is None:
                return 0
            ts = _fmt_ts(result.ts) if result.ts else "-"
            print(f"ts={ts} coordinator={result.coordinator}", file=sys.stderr)
            for r in result.replicas:
                what = (
                    f"error: {r.error}"
                    if r.error
                    else "tombstone"
                    if r.tombstone
                    else "absent"
                    if not r.found
                    else "value"
                )
                version = _fmt_ts(r.ts) if r.ts else "-"
                role = "fallback" if r.fallback else "primary"
                print(f"  {r.node:<6} {role:<8} {what:<10} ts={version}", file=sys.stderr)
            return 0

    return int(_run(go()))


def _fmt_ts(ts: Any) -> str:
    return f"{ts.wall}.{ts.logical}@{ts.node}"


def _print_acks(replicas: Sequence[Any]) -> None:
    for r in replicas:
        role = "fallback" if r.fallback else "primary"
        state = "ack" if r.ok else f"failed: {r.error}"
        print(f"  {r.node:<6} {role:<8} {state}")


def cmd_repair(args: argparse.Namespace) -> int:
    from kvstore.cluster import repair

    cfg = config_mod.load(args.config)
    if args.node is not None:
        cfg.node(args.node)  # a clear error for an unknown id
    return repair.show(cfg, args.node, as_json=args.json, tls=tls_files(args, cfg))


def cmd_demo(args: argparse.Namespace) -> int:
    from kvstore.cluster.demo import run_demo

    return run_demo(config_mod.load(args.config), Path(args.config))
