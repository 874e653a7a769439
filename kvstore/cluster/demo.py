"""``kvstore demo``: a guided tour of a local 5-node cluster and per-call consistency.

It starts the cluster from the config, writes and reads at one/quorum/all, kills one of
a key's replicas (SIGKILL) to show which calls still succeed and which fail and how,
restarts it, and always stops every node it started, even when a step fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kvstore.client import SyncClient
from kvstore.cluster.local import ClusterError, LocalCluster
from kvstore.config import ClusterConfig
from kvstore.core.ring import Ring
from kvstore.errors import KVError

console = Console()


def _attempt(label: str, call: Callable[[], Any]) -> None:
    try:
        result = call()
    except KVError as exc:
        kind = "definite: it did not happen" if exc.definite else "indefinite: it may have"
        console.print(f"  [red]x[/red] {label:<34} {type(exc).__name__} ({kind})")
        console.print(f"      [dim]{exc}[/dim]")
        return
    shown = result.decode() if isinstance(result, bytes) else result
    if hasattr(result, "ts"):
        shown = f"ok, version {result.ts.wall}.{result.ts.logical}@{result.ts.node}"
    console.print(f"  [green]v[/green] {label:<34} {shown}")


def run_demo(config: ClusterConfig, config_path: Path) -> int:
    cluster = LocalCluster(config, config_path)
    key = "user:42"
    replicas = Ring(config.node_ids, config.vnodes).primaries(key.encode(), config.n)
    try:
        console.rule(f"1. start a {len(config.nodes)}-node cluster (N={config.n})")
        cluster.start()
        for node in config.nodes:
            console.print(f"  {node.id} on {node.address}, pid {cluster.nodes[node.id].pid}")
        console.print(f"  key {key!r} lives on {', '.join(replicas)} (its preference list)")

        with SyncClient.from_config(config, timeout=3.0) as client:
            console.rule("2. every call picks its own consistency")
            _attempt("put w=one", lambda: client.put(key, "alice v1", w="one"))
            _attempt("put w=quorum", lambda: client.put(key, "alice v2", w="quorum"))
            _attempt("put w=all", lambda: client.put(key, "alice v3", w="all"))
            _attempt("get r=one", lambda: client.get(key, r="one"))
            _attempt("get r=quorum", lambda: client.get(key, r="quorum"))
            _attempt("get consistency=all", lambda: client.get(key, consistency="all"))
            traced = client.get(key, r="all", trace=True)
            console.print("  trace of get r=all (what each replica holds):")
            for r in traced.replicas:
                version = f"{r.ts.wall}.{r.ts.logical}@{r.ts.node}" if r.ts else "-"
                console.print(f"    {r.node}: {'found' if r.found else 'absent'} {version}")
            _attempt("get r=4 (more than N)", lambda: client.get(key, r=4))

            victim = replicas[0]
            console.rule(f"3. SIGKILL {victim}, one of the key's replicas")
            cluster.kill(victim)
            _attempt("put w=one", lambda: client.put(key, "bob v1", w="one"))
            _attempt("put w=quorum", lambda: client.put(key, "bob v2", w="quorum"))
            _attempt("get r=one", lambda: client.get(key, r="one"))
            _attempt("get r=quorum", lambda: client.get(key, r="quorum"))
            _attempt("put w=all (strict)", lambda: client.put(key, "bob v3", w="all", sloppy=False))
            _attempt("get r=all", lambda: client.get(key, r="all"))

            console.rule(f"4. restart {victim}")
            cluster.start_node(victim)
            _attempt("put w=all", lambda: client.put(key, "carol v1", w="all"))
            _attempt("get r=all", lambda: client.get(key, r="all"))
            _attempt("delete w=quorum", lambda: client.delete(key, w="quorum"))
            _attempt("get r=quorum (after delete)", lambda: client.get(key, r="quorum"))
    except ClusterError as exc:
        console.print(f"[red]kvstore: {exc}[/red]")
        return 1
    finally:
        console.rule("5. shut the cluster down")
        cluster.stop()
        console.print("  every node stopped")
    return 0
