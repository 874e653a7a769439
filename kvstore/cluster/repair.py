"""``kvstore repair``: run one anti-entropy round on every node (or one), from a shell.

Rules: nodes are asked one after another (``Admin.Repair``), so a cluster-wide repair
never runs two rounds at once on a 2-core machine; every pair of replicas gets compared
(a pair already in sync costs one root hash). The exit status is 0 only when every node
answered and every exchange completed: a repair with an unreachable replica has not
done its job, and the operator must know (tombstone grace depends on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from kvstore.cluster.admin import SyncAdminClient
from kvstore.config import ClusterConfig
from kvstore.net.channel import Dialer
from kvstore.security.tls import TLSFiles

console = Console()
REPAIR_TIMEOUT_S = 600.0


@dataclass(slots=True)
class NodeRepair:
    node: str
    keys_repaired: int = 0
    exchanges: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    peers: list[dict[str, Any]] = field(default_factory=list)


def run(
    config: ClusterConfig, node_id: str | None = None, tls: TLSFiles | None = None
) -> list[NodeRepair]:
    targets = [config.node(node_id)] if node_id is not None else list(config.nodes)
    results: list[NodeRepair] = []
    dialer = Dialer(tls) if tls is not None else Dialer.for_client(config)
    for node in targets:
        result = NodeRepair(node.id)
        try:
            with SyncAdminClient(config, node.id, dialer=dialer) as admin:
                reply = admin.repair(timeout=REPAIR_TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            result.errors.append(f"{code}: {details}")
        else:
            result.keys_repaired = reply.keys_repaired
            result.exchanges = reply.exchanges
            result.bytes = reply.bytes
            for p in reply.peers:
                result.seconds += p.seconds
                if p.error:
                    result.errors.append(f"with {p.peer}: {p.error}")
                result.peers.append(
                    {
                        "peer": p.peer,
                        "keys_pulled": p.keys_pulled,
                        "keys_pushed": p.keys_pushed,
                        "leaves_differing": p.leaves_differing,
                        "bytes_sent": p.bytes_sent,
                        "bytes_received": p.bytes_received,
                        "round_trips": p.round_trips,
                        "seconds": round(p.seconds, 4),
                        "error": p.error,
                    }
                )
        results.append(result)
    return results


def show(
    config: ClusterConfig,
    node_id: str | None = None,
    *,
    as_json: bool = False,
    tls: TLSFiles | None = None,
) -> int:
    results = run(config, node_id, tls)
    ok = all(not r.errors for r in results)
    if as_json:
        rows = [
            {
                "node": r.node,
                "keys_repaired": r.keys_repaired,
                "exchanges": r.exchanges,
                "bytes": r.bytes,
                "seconds": round(r.seconds, 4),
                "errors": r.errors,
                "peers": r.peers,
            }
            for r in results
        ]
        print(json.dumps({"cluster": config.name, "ok": ok, "nodes": rows}, indent=2))
        return 0 if ok else 1
    table = Table(title=f"anti-entropy round, cluster {config.name}")
    for column in ("node", "keys repaired", "exchanges", "bytes", "seconds", "errors"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.node,
            str(r.keys_repaired),
            str(r.exchanges),
            str(r.bytes),
            f"{r.seconds:.3f}",
            "[red]" + "; ".join(r.errors) + "[/red]" if r.errors else "-",
        )
    console.print(table)
    return 0 if ok else 1
