"""Helpers shared by the cluster tests: waiting on a condition with a deadline, what
nodes see and hold (over the admin API), faults, and keys placed on chosen nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from kvstore import SyncClient
from kvstore.cluster.local import LocalCluster, pid_alive
from kvstore.core.ring import Ring
from kvstore.pb import kvstore_pb2 as pb
from kvstore.security.tls import client_files

FAST = {"heartbeat_interval_ms": 100, "failure_detection_ms": 600}


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.05)


def views(cluster: LocalCluster, observer: str) -> dict[str, str]:
    reply = cluster.status(observer)
    return {p.node: p.state for p in reply.peers}


def seen_by_all(cluster: LocalCluster, target: str, state: str) -> bool:
    """Every other running node sees ``target`` in ``state``."""
    others = [n for n in cluster.config.node_ids if n != target and pid_alive(cluster.nodes[n].pid)]
    try:
        return all(views(cluster, o).get(target) == state for o in others)
    except grpc.RpcError:
        return False


def settled_views(cluster: LocalCluster, down: set[str]) -> bool:
    """Every running node sees each of ``down`` down and every other running node up:
    the membership a test that routes around dead nodes assumes (a live node briefly
    suspected while its peers died would take a fallback's place in the plan)."""
    live = [n for n in cluster.config.node_ids if n not in down]
    return all(seen_by_all(cluster, n, "down") for n in down) and all(
        seen_by_all(cluster, n, "up") for n in live
    )


def hints_pending(cluster: LocalCluster, node: str) -> dict[str, int]:
    return dict(cluster.status(node).hints_pending)


def counters(cluster: LocalCluster, node: str) -> dict[str, int]:
    return dict(cluster.status(node).counters)


def read_local(cluster: LocalCluster, node: str, key: str) -> bytes | None:
    with cluster.sync_admin(node) as admin:
        reply = admin.read_local(key.encode(), timeout=2)
    if not reply.version.found or reply.version.tombstone:
        return None
    return reply.value


def layout(cluster: LocalCluster, key: str, down: set[str]) -> tuple[tuple[str, ...], list[str]]:
    cfg = cluster.config
    ring = Ring(cfg.node_ids, cfg.vnodes)
    primaries = ring.primaries(key.encode(), cfg.n)
    fallbacks = [r.node for r in ring.preference_list(key.encode(), cfg.n, down) if not r.primary]
    return primaries, fallbacks


def set_faults(cluster: LocalCluster, node: str, **faults: Any) -> pb.Faults:
    with cluster.sync_admin(node) as admin:
        return admin.set_faults(pb.Faults(**faults), timeout=2)


def only(cluster: LocalCluster, node: str) -> SyncClient:
    """A client whose only coordinator is ``node``."""
    return SyncClient(
        [cluster.config.node(node).address], n=cluster.config.n, tls=client_files(cluster.config)
    )


def keys_led_by(cluster: LocalCluster, node: str, count: int, prefix: str) -> list[str]:
    """Keys whose first coordinator (for a token-aware client) is ``node``."""
    ring = Ring(cluster.config.node_ids, cluster.config.vnodes)
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"{prefix}-{i}"
        if ring.walk(key.encode())[0] == node:
            keys.append(key)
        i += 1
    return keys
