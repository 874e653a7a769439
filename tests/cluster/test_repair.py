"""Anti-entropy and tombstone grace with real processes.

Replicas are made to diverge in every way the store allows (a write that reached one
replica, a delete a replica never saw, hints that expired while their owner was down),
then one on-demand repair round runs, and every replica of every key is read directly
(Admin.ReadLocal): all must hold the same, newest version.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kvstore import SyncClient
from kvstore.cluster.local import LocalCluster
from kvstore.core.ring import Ring
from kvstore.pb import kvstore_pb2 as pb
from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import FAST, only, seen_by_all, set_faults, wait_until

# (found, tombstone, (wall, logical, node), value): one replica's version of a key
Version = tuple[bool, bool, tuple[int, int, str], bytes]


@contextmanager
def local_reader(cluster: LocalCluster) -> Iterator[Any]:
    admins = {n.id: cluster.sync_admin(n.id) for n in cluster.config.nodes}

    def read(node: str, key: str) -> Version:
        reply = admins[node].read_local(key.encode(), timeout=5)
        v = reply.version
        return (v.found, v.tombstone, (v.ts.wall, v.ts.logical, v.ts.node), reply.value)

    try:
        yield read
    finally:
        for admin in admins.values():
            admin.close()


def primaries(cluster: LocalCluster, key: str) -> tuple[str, ...]:
    cfg = cluster.config
    return Ring(cfg.node_ids, cfg.vnodes).primaries(key.encode(), cfg.n)


def replica_versions(cluster: LocalCluster, read: Any, key: str) -> dict[str, Version]:
    return {node: read(node, key) for node in primaries(cluster, key)}


def repair_rpc(cluster: LocalCluster, node: str) -> pb.RepairReply:
    with cluster.sync_admin(node) as admin:
        return admin.repair(timeout=60)


def repair_cli(cluster: LocalCluster, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "kvstore", "repair", "--json", *extra]
    done = subprocess.run(
        [*command, "--config", str(cluster.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def keys_where(cluster: LocalCluster, prefix: str, count: int, rule: Any) -> list[str]:
    found: list[str] = []
    i = 0
    while len(found) < count:
        key = f"{prefix}{i}"
        if rule(primaries(cluster, key)):
            found.append(key)
        i += 1
    return found


def counter_sum(cluster: LocalCluster, name: str, nodes: list[str] | None = None) -> int:
    ids = cluster.config.node_ids if nodes is None else nodes
    return sum(cluster.status(n).counters.get(name, 0) for n in ids)


def test_one_repair_round_makes_every_replica_hold_the_newest_version(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(hint_window_s=1, **FAST)
    lonely, victim = "n1", "n4"  # n1: takes writes alone; n4: down during deletes
    base = [f"base{i}" for i in range(60)]
    expected: dict[str, bytes | None] = {}
    with only(cluster, "n2") as client:
        for key in base:
            client.put(key, f"v0-{key}", w="all")
            expected[key] = f"v0-{key}".encode()

    # 1. Partial writes: n1 cut off from every peer (before anyone suspects it) takes
    # writes at W=1 that reach only its own store.
    mine = keys_where(cluster, "partial", 12, lambda p: lonely in p)
    overwrite = [k for k in base if lonely in primaries(cluster, k)][:6]
    erase = [k for k in base if lonely in primaries(cluster, k)][6:10]
    others = [n for n in cluster.config.node_ids if n != lonely]
    set_faults(cluster, lonely, isolate_from=others)
    try:
        with only(cluster, lonely) as client:
            for key in mine + overwrite:
                client.put(key, f"lonely-{key}", w=1, sloppy=False)
                expected[key] = f"lonely-{key}".encode()
            for key in erase:
                client.delete(key, w=1, sloppy=False)
                expected[key] = None
    finally:
        set_faults(cluster, lonely)
    wait_until(lambda: seen_by_all(cluster, lonely, "up"), f"{lonely} seen up after healing")

    # 2. A node down during deletes and writes, whose hints expire before it returns.
    cluster.kill(victim)
    wait_until(lambda: seen_by_all(cluster, victim, "down"), f"{victim} seen down")
    owned = [k for k in base if victim in primaries(cluster, k) and expected[k] is not None]
    deleted, rewritten = owned[:6], owned[6:10]
    fresh = keys_where(cluster, "missed", 10, lambda p: victim in p)
    with only(cluster, "n2") as client:
        for key in deleted:
            client.delete(key)
            expected[key] = None
        for key in rewritten + fresh:
            client.put(key, f"v1-{key}")
            expected[key] = f"v1-{key}".encode()
    live = [n for n in cluster.config.node_ids if n != victim]
    wait_until(
        lambda: all(not cluster.status(n).hints_pending for n in live),
        "the hints for the down node expire",
    )
    assert counter_sum(cluster, "hints.dropped", live) >= len(deleted + rewritten + fresh)
    cluster.start_node(victim)
    wait_until(lambda: seen_by_all(cluster, victim, "up"), f"{victim} seen up")

    with local_reader(cluster) as read:
        diverged = [
            k for k in expected if len(set(replica_versions(cluster, read, k).values())) > 1
        ]
        # every fault above left its mark (else this test would prove nothing)
        assert set(mine) <= set(diverged) and set(deleted + fresh) <= set(diverged)

        report = repair_cli(cluster)
        assert report["ok"], report
        assert sum(n["keys_repaired"] for n in report["nodes"]) >= len(diverged)
        assert all(n["exchanges"] >= 2 for n in report["nodes"])

        for key, value in expected.items():
            versions = replica_versions(cluster, read, key)
            assert len(set(versions.values())) == 1, (key, versions)
            found, tombstone, _, stored = next(iter(versions.values()))
            if value is None:
                assert found and tombstone, (key, versions)
            else:
                assert found and not tombstone and stored == value, (key, versions)

    # converged: a second round finds nothing to move
    again = [repair_rpc(cluster, n) for n in cluster.config.node_ids]
    assert [r.keys_repaired for r in again] == [0] * len(again)
    assert all(p.leaves_differing == 0 for r in again for p in r.peers)
    assert counter_sum(cluster, "ae.exchanges") >= 2 * 2 * len(again)
    assert counter_sum(cluster, "ae.bytes_sent") > 0
    # every round was summed from the engines' digests: no node scanned its store
    assert counter_sum(cluster, "ae.digest_exchanges") == counter_sum(cluster, "ae.exchanges")


def test_tombstone_grace_repaired_in_time_stays_deleted_too_late_comes_back(
    start_cluster: ClusterFactory,
) -> None:
    # Nobody is marked down in this test: a delete a replica misses leaves no hint. The
    # config insists on scheduled repair within the grace period; y breaks the operator
    # rule by staying cut off (its scheduled exchanges fail) until the others purged.
    grace = 3.0
    cluster = start_cluster(
        tombstone_grace_s=grace,
        anti_entropy_interval_s=2.5,
        hint_window_s=1,
        failure_detection_ms=10_000,
    )
    x, y, coordinator = "n3", "n5", "n1"
    in_time = keys_where(cluster, "grace", 8, lambda p: x in p and y not in p)
    too_late = keys_where(cluster, "late", 8, lambda p: y in p and x not in p)
    with only(cluster, coordinator) as client:
        for key in in_time + too_late:
            client.put(key, "old", w="all")
        for node in (x, y):
            set_faults(
                cluster, node, isolate_from=[n for n in cluster.config.node_ids if n != node]
            )
        try:
            for key in in_time + too_late:
                client.delete(key, w=2, sloppy=False)
        finally:
            set_faults(cluster, x)
    try:
        resurrect(cluster, grace, x, y, in_time, too_late)
    finally:
        set_faults(cluster, y)
    with local_reader(cluster) as read:
        repair_cli(cluster)
        # repaired in time: never resurrected; every replica stays empty
        for key in in_time:
            assert {read(n, key)[0] for n in primaries(cluster, key)} == {False}
        # not repaired in time (the operator rule broken): y's old value comes back
        for key in too_late:
            assert {read(n, key)[3] for n in primaries(cluster, key)} == {b"old"}
    with SyncClient.from_config(cluster.config) as client:
        assert all(client.get(k, r="all") is None for k in in_time)


def resurrect(
    cluster: LocalCluster, grace: float, x: str, y: str, in_time: list[str], too_late: list[str]
) -> None:
    """x is repaired in time, y (still cut off) is not; the others purge the tombstones."""
    with local_reader(cluster) as read:
        # x and y missed the deletes: they still hold the old values
        assert all(read(x, k)[3] == b"old" and not read(x, k)[1] for k in in_time)
        assert all(read(y, k)[3] == b"old" and not read(y, k)[1] for k in too_late)

        # x is repaired within the grace period (y, cut off, is not)
        with cluster.sync_admin(x) as admin:
            reachable = [n for n in cluster.config.node_ids if n not in (x, y)]
            report = admin.repair(reachable, timeout=60)
        assert not [p.error for p in report.peers if p.error]
        assert all(read(x, k)[:2] == (True, True) for k in in_time)

        def purged() -> bool:
            gone_in_time = all(not read(n, k)[0] for k in in_time for n in primaries(cluster, k))
            gone_late = all(
                not read(n, k)[0] for k in too_late for n in primaries(cluster, k) if n != y
            )
            return gone_in_time and gone_late

        wait_until(purged, "tombstones purged after the grace period", timeout=grace + 10)
        assert counter_sum(cluster, "tombstones.purged") >= 3 * len(in_time) + 2 * len(too_late)


def test_scheduled_rounds_repair_without_being_asked(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster(anti_entropy_interval_s=0.5, failure_detection_ms=10_000)
    stale, coordinator = "n2", "n1"
    keys = keys_where(cluster, "sched", 6, lambda p: stale in p and coordinator in p)
    with only(cluster, coordinator) as client:
        set_faults(cluster, stale, isolate_from=[n for n in cluster.config.node_ids if n != stale])
        try:
            for key in keys:
                client.put(key, "while-cut-off", w=2, sloppy=False)
        finally:
            set_faults(cluster, stale)
    with local_reader(cluster) as read:
        wait_until(
            lambda: all(read(stale, k)[3] == b"while-cut-off" for k in keys),
            "a scheduled round brings the cut-off replica up to date",
        )
    # the counter follows the commit by a turn of the node's loop: wait for it too
    wait_until(
        lambda: counter_sum(cluster, "ae.keys_repaired") >= len(keys),
        "the repaired keys are counted",
        timeout=5,
    )


def test_a_cut_off_peer_costs_a_repair_round_seconds_not_a_minute(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(failure_detection_ms=10_000)  # never declared down here
    others = [n for n in cluster.config.node_ids if n != "n2"]
    set_faults(cluster, "n2", isolate_from=others)
    try:
        began = time.monotonic()
        reply = repair_rpc(cluster, "n1")
        took = time.monotonic() - began
    finally:
        set_faults(cluster, "n2")
    errors = {p.peer: p.error for p in reply.peers if p.error}
    assert list(errors) == ["n2"] and "did not answer" in errors["n2"]
    assert reply.exchanges == len(reply.peers) - 1  # every other peer was repaired
    assert took < 10, f"the round took {took:.1f} s"
