"""``kvstore cluster plan`` on a running cluster: the ring the nodes report, the ranges a
changed config would move, and the keys and bytes each source really holds there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import msgpack
import pytest

from kvstore import SyncClient
from kvstore.cli import main
from kvstore.cluster.local import LocalCluster
from kvstore.core.ring import Ring
from kvstore.pb import kvstore_pb2 as pb
from tests.cluster.conftest import ClusterFactory, config_with_nodes

KEYS = [f"plan-{i}".encode() for i in range(120)]


def _plan(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    code = main(["cluster", "plan", "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def loaded(start_cluster: ClusterFactory) -> LocalCluster:
    cluster = start_cluster()
    with SyncClient.from_config(cluster.config) as client:
        for key in KEYS:
            client.put(key, b"v" * 10, consistency="all")
        client.delete(KEYS[0], consistency="all")  # a tombstone streams too
    return cluster


def test_adding_a_node_plans_what_it_will_own_with_the_sources_real_counts(
    loaded: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = [n.id for n in loaded.config.nodes]
    desired = config_with_nodes(loaded, nodes, 1, "grow.toml")
    code, report = _plan(desired, capsys)
    assert code == 0, report
    assert report["added"] == ["n6"] and report["removed"] == [] and report["silent"] == ["n6"]
    assert report["epoch"] == 1
    assert {s["to"] for s in report["streams"]} == {"n6"}
    # the model: the keys whose replicas after the change include n6
    after = Ring([*nodes, "n6"], loaded.config.vnodes)
    gaining = [k for k in KEYS if "n6" in after.primaries(k, loaded.config.n)]
    sizes = [s["size"] for s in report["streams"]]
    assert sum(size["keys"] for size in sizes) == len(gaining)
    assert sum(size["tombstones"] for size in sizes) == (KEYS[0] in gaining)
    live = [k for k in gaining if k != KEYS[0]]
    assert sum(size["bytes"] for size in sizes) == sum(len(k) + 10 for k in live) + sum(
        len(k) for k in gaining if k == KEYS[0]
    )
    assert report["cleanup"]  # someone hands each moved range over


def test_removing_a_node_and_refusals(
    loaded: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _plan(
        config_with_nodes(loaded, ["n1", "n3", "n4", "n5"], 0, "shrink.toml"), capsys
    )
    assert code == 0 and report["removed"] == ["n2"] and report["silent"] == []
    assert "n2" in report["cleanup"] and "n2" not in {s["to"] for s in report["streams"]}
    # fewer nodes than N: the config itself is refused before any plan
    code = main(
        ["cluster", "plan", "--config", str(config_with_nodes(loaded, ["n1", "n2"], 0, "two.toml"))]
    )
    assert (
        code == 2
        and "cluster.n: 3 must be between 1 and the number of nodes (2)" in capsys.readouterr().err
    )
    code, report = _plan(loaded.config_path, capsys, "--dead", "n2")
    assert code == 1 and "still in the desired membership" in report["refused"]
    code, report = _plan(loaded.config_path, capsys)
    assert code == 0 and report["streams"] == [] and report["added"] == []


def test_a_plan_needs_a_running_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kvstore import config as config_mod
    from kvstore.cluster.local import ensure_certs
    from tests.cluster.conftest import make_config

    path = make_config(tmp_path)
    ensure_certs(config_mod.load(path))  # the admin's certificate exists, no node runs
    code, report = _plan(path, capsys)
    assert code == 1 and "no node of cluster" in report["refused"]


def test_range_stats_refuses_overlapping_ranges(loaded: LocalCluster) -> None:
    with loaded.sync_admin("n1") as admin, pytest.raises(grpc.RpcError) as caught:
        admin.range_stats([(0, 100), (50, 200)])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "overlap" in (caught.value.details() or "")


def test_a_node_refuses_a_config_that_changes_its_membership(loaded: LocalCluster) -> None:
    # today's way to lose writes: edit cluster.toml and restart one node onto a new ring
    nodes = [n.id for n in loaded.config.nodes]
    grow = config_with_nodes(loaded, nodes, 1, "grow.toml")
    loaded.stop_node("n1")
    proc = subprocess.run(
        [sys.executable, "-m", "kvstore", "node", "--id", "n1", "--config", str(grow)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "not the ring this node serves (epoch 1: n1, n2, n3, n4, n5" in proc.stderr
    loaded.start_node("n1")  # with its own config it starts, on the same data
    assert loaded.status("n1").ring.epoch == 1


def test_epoch_and_pull_refuse_bad_input(loaded: LocalCluster) -> None:
    with loaded.sync_admin("n1") as admin:
        stub = admin._admin()
        for payload in (b"\xc1", msgpack.packb(["learned", 3]), msgpack.packb(["prepare", 2])):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Epoch(pb.EpochFrame(payload=payload), timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            admin.pull("n2", [(0, 100), (50, 200)])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "overlap" in (caught.value.details() or "")
        with pytest.raises(grpc.RpcError) as caught:
            admin.pull("n9", [(0, 100)])
        assert "n9 is not a node this one knows" in (caught.value.details() or "")
    assert loaded.status("n1").ring.epoch == 1  # nothing above changed its vote
