"""The planted ABD bugs the harness's catch rate is measured with, shown deterministically:
each produces exactly the anomaly it stands for, and the unmodified store does not."""

from __future__ import annotations

import grpc
import pytest

from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import layout, only, set_faults


@pytest.mark.parametrize("planted", [False, True])
def test_abd_no_query_lets_a_skewed_clock_win(start_cluster: ClusterFactory, planted: bool) -> None:
    cluster = start_cluster()
    key = "planted-query"
    primaries = layout(cluster, key, set())[0]
    fast = primaries[0]
    slow = next(n for n in cluster.config.node_ids if n not in primaries)
    set_faults(cluster, fast, clock_offset_ms=5_000)
    if planted:
        set_faults(cluster, slow, planted_bugs=["abd-no-query"])
    with only(cluster, fast) as client:
        client.put(key, "from-the-future", w="all")
    with only(cluster, slow) as client:
        client.put(key, "later", consistency="linearizable")
        expected = b"from-the-future" if planted else b"later"  # planted: a lost write
        assert client.get(key, consistency="linearizable") == expected


@pytest.mark.parametrize("planted", [False, True])
def test_abd_no_write_back_lets_reads_go_new_then_old(
    start_cluster: ClusterFactory, planted: bool
) -> None:
    cluster = start_cluster(failure_detection_ms=10_000)  # nobody is declared down
    key = "planted-write-back"
    a, b, c = layout(cluster, key, set())[0]
    bugs = ["abd-no-write-back"] if planted else []

    def cut_a_from(*nodes: str) -> None:  # SetFaults replaces a node's faults whole
        set_faults(cluster, a, isolate_from=list(nodes), planted_bugs=bugs)

    set_faults(cluster, c, planted_bugs=bugs)
    cut_a_from()
    with only(cluster, a) as client:
        client.put(key, "v1", w="all")
        cut_a_from(b, c)
        client.put(key, "v2", w=1, sloppy=False)  # v2 lives on a alone
        cut_a_from(c)  # a and b meet again
        first = client.get(key, consistency="linearizable")  # a quorum {a, b} sees v2
    assert first == b"v2"
    cut_a_from(b, c)  # the next read's quorum is {b, c}
    with only(cluster, c) as client:
        second = client.get(key, consistency="linearizable")
    # with the write-back, b holds v2 by now; without it, new-then-old
    assert second == (b"v1" if planted else b"v2")


def test_an_unknown_planted_bug_is_refused(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster(nodes=3)
    with pytest.raises(grpc.RpcError) as info:
        set_faults(cluster, "n1", planted_bugs=["everything"])
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown planted bugs" in (info.value.details() or "")
