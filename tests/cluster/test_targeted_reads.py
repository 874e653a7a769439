"""Targeted reads: a plain read at R < N asks R replicas, the rest only when needed.

What must hold: a quorum read costs one remote read, not two; a first-choice replica
that stops answering is covered by the speculative request, one that fails by asking
the next at once; reads that need every answer (tracing, read repair) still ask all.
"""

from __future__ import annotations

from kvstore import Client
from kvstore.cluster.local import LocalCluster
from kvstore.core.coordinator import contact_order
from kvstore.core.ring import Replica, Ring
from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import keys_led_by


def counters(cluster: LocalCluster, nodes: list[str] | None = None) -> dict[str, dict[str, int]]:
    ids = cluster.config.node_ids if nodes is None else nodes
    return {n: dict(cluster.status(n).counters) for n in ids}


def total(snapshot: dict[str, dict[str, int]], name: str) -> int:
    return sum(c.get(name, 0) for c in snapshot.values())


def test_contact_order_puts_the_local_replica_first_and_skips_what_cannot_count() -> None:
    a, b, c = Replica("n1", True), Replica("n2", True), Replica("n3", True)
    f = Replica("n4", False, "n2")
    assert contact_order([a, b, c], "n2", sloppy=False) == [b, a, c]
    assert contact_order([a, f, c], "n9", sloppy=True) == [a, c, f]
    assert contact_order([a, f, c], "n4", sloppy=True) == [a, c, f]  # primaries first
    assert contact_order([a, f, c], "n3", sloppy=True) == [c, a, f]
    assert contact_order([a, f, c], "n4", sloppy=False) == [a, c]


async def test_a_quorum_read_asks_two_replicas_and_an_all_read_three(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(speculative_read_ms=1000)  # no speculation in this test
    coordinator = cluster.config.node_ids[0]
    keys = keys_led_by(cluster, coordinator, 40, "targeted")
    async with Client.from_config(cluster.config) as client:
        for key in keys:
            await client.put(key, key, w="all")
        before = counters(cluster)
        for key in keys:
            assert await client.get(key, r="quorum") == key.encode()
        middle = counters(cluster)
        for key in keys:
            assert await client.get(key, r="all") == key.encode()
        after = counters(cluster)
    # remote reads served by replicas (the coordinator reads its own copy locally)
    assert total(middle, "replica.reads") - total(before, "replica.reads") == len(keys)
    assert total(after, "replica.reads") - total(middle, "replica.reads") == 2 * len(keys)
    assert total(after, "read.speculative") == 0


async def test_a_stalled_first_choice_is_covered_by_the_speculative_request(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(speculative_read_ms=30, failure_detection_ms=60_000)
    coordinator = cluster.config.node_ids[0]
    (key,) = keys_led_by(cluster, coordinator, 1, "stalled")
    ring = Ring(cluster.config.node_ids, cluster.config.vnodes)
    second = ring.primaries(key.encode(), cluster.config.n)[1]  # asked with the local one
    async with Client.from_config(cluster.config) as client:
        await client.put(key, "v", w="all")
        cluster.pause(second)
        try:
            # without the speculative request this waits on the paused replica and
            # times out; with it the third replica answers after 30 ms
            assert await client.get(key, r="quorum", timeout=1.5) == b"v"
        finally:
            cluster.resume(second)
    assert counters(cluster)[coordinator].get("read.speculative", 0) >= 1


async def test_a_failed_first_choice_is_replaced_at_once(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster(speculative_read_ms=5_000, failure_detection_ms=60_000)
    coordinator = cluster.config.node_ids[0]
    (key,) = keys_led_by(cluster, coordinator, 1, "failed")
    ring = Ring(cluster.config.node_ids, cluster.config.vnodes)
    second = ring.primaries(key.encode(), cluster.config.n)[1]
    async with Client.from_config(cluster.config) as client:
        await client.put(key, "v", w="all")
        cluster.kill(second)  # not yet seen down: the coordinator still asks it first
        assert await client.get(key, r="quorum", timeout=2.0) == b"v"
    assert counters(cluster, [coordinator])[coordinator].get("read.replaced", 0) >= 1
