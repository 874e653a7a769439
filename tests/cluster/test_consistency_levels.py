"""Read repair (off/async/blocking) and the linearizable level, with real processes and
faults injected at the gRPC seam (isolation, clock skew)."""

from __future__ import annotations

import grpc
import pytest

from kvstore import Client, KVError, SyncClient, Unavailable
from kvstore.cluster.local import LocalCluster
from kvstore.security.tls import client_files
from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import (
    FAST,
    counters,
    layout,
    only,
    read_local,
    seen_by_all,
    set_faults,
    wait_until,
)


def make_stale(cluster: LocalCluster, key: str) -> tuple[str, str]:
    """Write v1 everywhere, then v2 everywhere but one replica; returns (coordinator, stale)."""
    coordinator, _, stale = layout(cluster, key, set())[0]
    with only(cluster, coordinator) as client:
        client.put(key, "v1", w="all")
        set_faults(cluster, coordinator, isolate_from=[stale])
        try:
            client.put(key, "v2", w=2)
        finally:
            set_faults(cluster, coordinator)
    assert read_local(cluster, stale, key) == b"v1"
    return coordinator, stale


@pytest.mark.parametrize("mode", ["off", "async", "blocking"])
def test_read_repair_modes(start_cluster: ClusterFactory, mode: str) -> None:
    cluster = start_cluster()
    key = f"repair-{mode}"
    coordinator, stale = make_stale(cluster, key)
    with only(cluster, coordinator) as client:
        assert client.get(key, r="all", read_repair=mode) == b"v2"
        if mode == "blocking":
            assert read_local(cluster, stale, key) == b"v2"  # repaired before the reply
        elif mode == "async":
            wait_until(lambda: read_local(cluster, stale, key) == b"v2", "async repair")
        else:
            client.get(key, r="all", read_repair="off")
            assert read_local(cluster, stale, key) == b"v1"
    repaired = counters(cluster, coordinator).get(f"read_repair.{mode}", 0)
    assert repaired == (0 if mode == "off" else 1)


def test_linearizable_read_writes_back_to_a_quorum(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    key = "abd-read"
    coordinator, second, third = layout(cluster, key, set())[0]
    with only(cluster, coordinator) as client:
        client.put(key, "v1", w="all")
        set_faults(cluster, coordinator, isolate_from=[second, third])
        try:
            client.put(key, "v2", w=1)  # only the coordinator holds v2
        finally:
            set_faults(cluster, coordinator)
        assert [read_local(cluster, n, key) for n in (second, third)] == [b"v1", b"v1"]
        # Delay the coordinator's messages to its peers, so its own replica (the only one
        # with v2) is certainly among the first quorum of replies. (A w=1 write is not a
        # linearizable write: a quorum of the other two could rightly answer v1.)
        set_faults(cluster, coordinator, delay_ms=150)
        try:
            assert client.get(key, consistency="linearizable") == b"v2"
        finally:
            set_faults(cluster, coordinator)
    holders = [n for n in (coordinator, second, third) if read_local(cluster, n, key) == b"v2"]
    assert len(holders) >= 2, "a linearizable read must leave its value on a quorum"
    assert counters(cluster, coordinator)["read_repair.linearizable"] >= 1


def test_linearizable_write_beats_a_skewed_clock(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    key = "skewed"
    primaries = layout(cluster, key, set())[0]
    fast = primaries[0]
    # A coordinator that holds no replica of the key, so its hybrid clock never saw the
    # skewed timestamp (a replica would have, and the HLC would hide the skew).
    slow = next(n for n in cluster.config.node_ids if n not in primaries)
    # seconds ahead: inside max_clock_drift_ms, so peers accept its timestamps
    set_faults(cluster, fast, clock_offset_ms=5_000)
    with only(cluster, fast) as client:
        client.put(key, "from-the-future", w="all")
    with only(cluster, slow) as client:
        client.put(key, "plain-later", w="all")
        # last-writer-wins by timestamp: the later write lost (a lost write)
        assert client.get(key, r="all") == b"from-the-future"
        client.put(key, "linearizable-later", consistency="linearizable")
        assert client.get(key, consistency="linearizable") == b"linearizable-later"
        assert client.get(key, r="all") == b"linearizable-later"


async def test_linearizable_with_one_replica_killed_or_partitioned(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(**FAST)
    key = "abd-faults"
    primaries = layout(cluster, key, set())[0]
    async with Client.from_config(cluster.config) as client:
        await client.put(key, "a", consistency="linearizable")
        cluster.kill(primaries[2])
        await client.put(key, "b", consistency="linearizable")
        assert await client.get(key, consistency="linearizable") == b"b"
        cluster.start_node(primaries[2])
        # Until the others see it up again, coordinators do not ask it; with the first
        # primary cut off too, a strict majority would then be out of reach.
        wait_until(lambda: seen_by_all(cluster, primaries[2], "up"), "restarted replica up")
        # partition the first primary away from everyone (both directions)
        others = [n for n in cluster.config.node_ids if n != primaries[0]]
        set_faults(cluster, primaries[0], isolate_from=others)
        tls = client_files(cluster.config)
        majority = Client([cluster.config.node(primaries[1]).address], n=3, tls=tls)
        minority = Client([cluster.config.node(primaries[0]).address], n=3, tls=tls)
        try:
            await majority.put(key, "c", consistency="linearizable", timeout=5)
            assert await majority.get(key, consistency="linearizable", timeout=5) == b"c"
            # the isolated node cannot reach a majority: its read fails, definitely
            with pytest.raises(KVError) as info:
                await minority.get(key, consistency="linearizable", timeout=1)
            assert info.value.definite
        finally:
            set_faults(cluster, primaries[0])
            await majority.close()
            await minority.close()


def test_linearizable_without_a_majority_is_definitely_unavailable(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(**FAST)
    key = "abd-minority"
    primaries = layout(cluster, key, set())[0]
    for node in primaries[:2]:
        cluster.kill(node)
    wait_until(
        lambda: all(seen_by_all(cluster, n, "down") for n in primaries[:2]), "two primaries down"
    )
    with SyncClient.from_config(cluster.config) as client:
        for call in (
            lambda: client.put(key, "x", consistency="linearizable"),
            lambda: client.get(key, consistency="linearizable"),
        ):
            with pytest.raises(Unavailable) as info:
                call()
            assert info.value.definite
        # a sloppy quorum write still succeeds: availability is what it buys
        client.put(key, "y", w="quorum", sloppy=True)


def test_bad_faults_are_rejected(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster(engine="memory")
    with pytest.raises(grpc.RpcError) as info:
        set_faults(cluster, "n1", isolate_from=["n9"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError):
        set_faults(cluster, "n1", drop=1.5)


def test_lying_disk_holds_writes_in_memory_until_healed_or_crashed(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster()
    liar = "n1"
    others = [n for n in cluster.config.node_ids if n != liar]
    keys = [k for k in (f"lie-{i}" for i in range(30)) if liar in layout(cluster, k, set())[0]]
    kept, lost = keys[: len(keys) // 2], keys[len(keys) // 2 :]
    with only(cluster, liar) as client:
        set_faults(cluster, liar, lying_disk=True, isolate_from=others)
        for key in kept:
            client.put(key, "kept", w=1)
        assert all(read_local(cluster, liar, k) == b"kept" for k in kept)  # served from memory
        assert set_faults(cluster, liar, isolate_from=others).lying_disk is False  # written now
        set_faults(cluster, liar, lying_disk=True, isolate_from=others)
        for key in lost:
            client.put(key, "lost", w=1)
    assert counters(cluster, liar)["lying_disk.writes"] == len(keys)
    cluster.kill(liar)
    cluster.start_node(liar)
    assert all(read_local(cluster, liar, k) == b"kept" for k in kept)
    assert all(read_local(cluster, liar, k) is None for k in lost)
