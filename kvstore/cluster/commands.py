"""``kvstore cluster up | status | down``: the local cluster from a shell.

Rule: these commands only start, query and stop processes through ``LocalCluster`` and
the admin API; they print tables for people and JSON for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from kvstore.cluster.headlines import scrape_headlines
from kvstore.cluster.local import ClusterError, LocalCluster, is_our_node
from kvstore.cluster.ring_view import show as show_ring
from kvstore.cluster.ring_view import summary
from kvstore.config import ClusterConfig
from kvstore.security.tls import TLSFiles

console = Console()


def up(config: ClusterConfig, config_path: Path) -> int:
    cluster = LocalCluster(config, config_path)
    try:
        with console.status(f"starting {len(config.nodes)} nodes..."):
            cluster.start()
    except ClusterError as exc:
        console.print(f"[red]kvstore: {exc}[/red]")
        return 1
    console.print(f"cluster [bold]{config.name}[/bold] is up (run folder: {cluster.run_dir})")
    show_status(config, config_path)
    return 0


def down(config: ClusterConfig, config_path: Path) -> int:
    cluster = LocalCluster(config, config_path)
    cluster.load_state()
    running = [n.node_id for n in cluster.nodes.values() if is_our_node(n.pid, n.node_id)]
    cluster.stop()
    if running:
        console.print(f"stopped {', '.join(running)}")
    else:
        console.print("no node of this cluster was running")
    return 0


def collect(
    config: ClusterConfig, config_path: Path, tls: TLSFiles | None = None
) -> list[dict[str, Any]]:
    cluster = LocalCluster(config, config_path)
    if tls is not None:
        cluster.dial_as(tls)
    cluster.load_state()
    rows: list[dict[str, Any]] = []
    for node in config.nodes:
        proc = cluster.nodes.get(node.id)
        row: dict[str, Any] = {
            "id": node.id,
            "address": node.address,
            "pid": proc.pid if proc and is_our_node(proc.pid, node.id) else None,
        }
        try:
            reply = cluster.status(node.id, timeout=1.0)
        except grpc.RpcError as exc:
            row["health"] = "down" if row["pid"] is None else "unresponsive"
            row["error"] = exc.code().name if isinstance(exc, grpc.Call) else str(exc)
        else:
            row.update(
                health="up",
                pid=reply.pid,
                keys=reply.keys,
                uptime_s=round(reply.uptime_s, 1),
                counters=dict(reply.counters),
                hints_pending=dict(reply.hints_pending),
                peers={p.node: p.state for p in reply.peers},
                ring_epoch=reply.ring.epoch,
                ring_members=[m.id for m in reply.ring.members],
                ring={
                    "epoch": reply.ring.epoch,
                    "phase": reply.ring.phase,
                    "members": [m.id for m in reply.ring.members],
                    "target": [m.id for m in reply.ring.target],
                    "n": reply.ring.n,
                    "vnodes": reply.ring.vnodes,
                },
                streams=[_stream(s) for s in reply.streams],
                tls=reply.tls,
                faults_enabled=reply.faults_enabled,
                metrics=scrape_headlines(node.metrics),
            )
        rows.append(row)
    return rows


def _stream(s: Any) -> dict[str, Any]:
    return {"source": s.source, "epoch": s.epoch, "keys": s.keys, "bytes": s.bytes, "done": s.done}


def show_status(
    config: ClusterConfig, config_path: Path, *, as_json: bool = False, tls: TLSFiles | None = None
) -> int:
    rows = collect(config, config_path, tls)
    if as_json:
        print(json.dumps({"cluster": config.name, "nodes": rows, "ring": summary(rows)}, indent=2))
        return 0 if all(r["health"] == "up" for r in rows) else 1
    table = Table(title=f"cluster {config.name} (N={config.n}, R={config.r}, W={config.w})")
    columns = (
        "node",
        "address",
        "pid",
        "health",
        "keys",
        "ring epoch",
        "uptime",
        "tls/faults",
        "its view of peers",
    )
    for column in (
        *columns,
        "hints pending",
        "hints stored/delivered/dropped",
        "requests ok/err",
        "put p50/p99 ms",
        "get p50/p99 ms",
        "replica W/R p99 ms",
        "repaired/exchanges/purged",
    ):
        table.add_column(column)
    for r in rows:
        colour = {"up": "green", "down": "red"}.get(r["health"], "yellow")
        up = r["health"] == "up"
        peers = r.get("peers", {})
        not_up = [f"{p}:{state}" for p, state in sorted(peers.items()) if state != "up"]
        view = (" ".join(not_up) or "all up") if up else "-"
        c = r.get("counters", {})
        requests_ok = sum(v for k, v in c.items() if k.endswith(".ok"))
        requests_err = (
            sum(v for k, v in c.items() if k.split(".")[0] in ("put", "get", "delete"))
            - requests_ok
        )
        table.add_row(
            r["id"],
            r["address"],
            str(r["pid"] or "-"),
            f"[{colour}]{r['health']}[/{colour}]",
            str(r.get("keys", "-")),
            str(r.get("ring_epoch", "-")),
            f"{r['uptime_s']}s" if "uptime_s" in r else "-",
            (
                ("mTLS" if r["tls"] else "[red]OFF[/red]")
                + ("/[yellow]ENABLED[/yellow]" if r["faults_enabled"] else "/off")
            )
            if up
            else "-",
            view,
            str(sum(r.get("hints_pending", {}).values())) if up else "-",
            f"{c.get('hints.stored', 0)}/{c.get('hints.delivered', 0)}/{c.get('hints.dropped', 0)}"
            if up
            else "-",
            f"{requests_ok}/{requests_err}" if up else "-",
            *_headline_cells(r.get("metrics") if up else None),
            f"{c.get('ae.keys_repaired', 0)}/{c.get('ae.exchanges', 0)}"
            f"/{c.get('tombstones.purged', 0)}"
            if up
            else "-",
        )
    console.print(table)
    show_ring(summary(rows), console)
    return 0 if all(r["health"] == "up" for r in rows) else 1


def _headline_cells(metrics: dict[str, Any] | None) -> tuple[str, str, str]:
    """The latency columns of one node's row: '-' where it has no figure."""
    if not metrics or "why" in metrics:
        return ("-", "-", "-")

    def op(name: str) -> str:
        figures = metrics["latency_ms"].get(name)
        return f"{figures['p50']:.2f}/{figures['p99']:.2f}" if figures else "-"

    legs = metrics["legs_p99_ms"]
    replica = f"{legs['W']:.2f}/{legs['R']:.2f}" if "W" in legs and "R" in legs else "-"
    return (op("put"), op("get"), replica)
