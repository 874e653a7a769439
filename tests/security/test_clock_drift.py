"""Beyond max_clock_drift_ms: a node whose clock is off stops coordinating writes (peers
would refuse its timestamps), the rest of the cluster keeps serving, and it comes back
once its clock does. Inside the bound, skew is accepted (the clock nemesis lives there)."""

from __future__ import annotations

import re

import pytest

from kvstore import CoordinatorRefused, SyncClient
from kvstore.cluster.local import LocalCluster
from tests.cluster.conftest import ClusterFactory, start_cluster
from tests.cluster.helpers import FAST, counters, only, set_faults, wait_until

__all__ = ["start_cluster"]  # the fixture, shared with the cluster tests


def offset_ms(cluster: LocalCluster, node: str) -> int | None:
    status = cluster.status(node)
    return status.clock_offset_ms if status.HasField("clock_offset_ms") else None


def near(value: int | None, target: int) -> bool:
    return value is not None and abs(value - target) < 500


def writes(client: SyncClient) -> bool:
    try:
        client.put("probe", "x", w=1)
    except CoordinatorRefused as exc:
        # its hybrid clock ran ahead with the physical one and waits for real time
        assert "hybrid clock" in str(exc), exc
        return False
    return True


def test_a_node_off_by_more_than_the_bound_stops_coordinating_writes(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(max_clock_drift_ms=2_000, **FAST)
    skewed = "n1"
    with only(cluster, skewed) as client, SyncClient.from_config(cluster.config) as others:
        client.put("before", "ok", w="all")
        set_faults(cluster, skewed, clock_offset_ms=1_500)  # inside the bound: still fine
        client.put("inside", "ok", w="all")
        set_faults(cluster, skewed, clock_offset_ms=5_000)
        wait_until(lambda: near(offset_ms(cluster, skewed), 5_000), "the offset is seen", 10)
        with pytest.raises(CoordinatorRefused, match=r"(\d+) ms ahead of its peers'") as info:
            client.put("k", "v")
        assert info.value.definite
        # an NTP-style estimate, good to half a round trip (seen: 4999 and 5001)
        estimate = re.search(r"(\d+) ms ahead", str(info.value))
        assert estimate is not None and near(int(estimate.group(1)), 5_000)
        assert client.get("before", r="all") == b"ok"  # reads still work there
        for i in range(10):  # the token-aware client moves on to other coordinators
            others.put(f"meanwhile-{i}", "ok", w="all")
        set_faults(cluster, skewed, clock_offset_ms=0)
        wait_until(lambda: near(offset_ms(cluster, skewed), 0), "the offset is gone", 10)
        wait_until(lambda: writes(client), "real time caught up with its hybrid clock", 15)
        client.put("after", "ok", w="all")
        assert others.get("after", r="all") == b"ok"
        assert all(others.get(f"meanwhile-{i}", r="all") == b"ok" for i in range(10))
    assert counters(cluster, skewed)["put.coordinator_refused"] >= 1
