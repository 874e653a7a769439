"""Membership changes on real processes: ``kvstore cluster apply`` adds and removes nodes
under a steady load, and no acknowledged write is lost (issue: membership changes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import pytest

from kvstore import SyncClient
from kvstore import config as config_mod
from kvstore.cli import main
from kvstore.cluster.local import LocalCluster
from kvstore.core.ring import Ring
from kvstore.errors import KVError
from tests.cluster.conftest import ClusterFactory, config_with_nodes

STATIC = [f"s-{i}" for i in range(150)]  # written once, before the change: streamed


class Load:
    """A writer at one level, a new key per write (each written once, so a key a change
    failed to copy stays missing), remembering which writes were acknowledged."""

    def __init__(self, cluster: LocalCluster, consistency: str) -> None:
        self.cluster = cluster
        self.consistency = consistency
        self.acked: dict[str, int] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        with SyncClient.from_config(self.cluster.config, timeout=3.0) as client:
            while not self.stop.is_set():
                seq += 1
                key = f"d-{seq}"
                try:
                    client.put(key, str(seq).encode(), consistency=self.consistency)
                except KVError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    self.acked[key] = seq

    def __enter__(self) -> Load:
        with SyncClient.from_config(self.cluster.config, timeout=5.0) as client:
            for i, key in enumerate(STATIC):
                client.put(key, str(i).encode(), consistency=self.consistency)
                self.acked[key] = i
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    @property
    def during(self) -> int:
        return len(self.acked) - len(STATIC)


def _check_nothing_lost(config: config_mod.ClusterConfig, acked: dict[str, int]) -> None:
    with SyncClient.from_config(config, timeout=5.0) as client:
        for key, seq in acked.items():
            value = client.get(key, consistency="linearizable")
            assert value is not None and int(value) >= seq, (key, value, seq)


def _holds_what_it_owns(
    cluster: LocalCluster, node: str, ring: Ring, n: int, keys: list[str]
) -> None:
    """``node`` holds exactly the keys ``ring`` places on it, those written during the
    change included: the ones it gave up were dropped in the clean-up, and a write
    placed with an older ring than the clean-up's is refused (the epoch fence)."""
    with cluster.sync_admin(node) as admin:
        for key in keys:
            owns = node in ring.primaries(key.encode(), n)
            found = admin.read_local(key.encode()).version.found
            assert found == owns, (node, key, "owns" if owns else "gave it up")


@pytest.mark.parametrize("consistency", ["quorum", "linearizable"])
def test_adding_a_node_under_load_loses_no_acknowledged_write(
    start_cluster: ClusterFactory, consistency: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = start_cluster()
    nodes = [n.id for n in cluster.config.nodes]
    grow = config_with_nodes(cluster, nodes, 1, "grow.toml")
    desired = LocalCluster(config_mod.load(grow), grow)
    try:
        with Load(cluster, consistency) as load:
            assert main(["cluster", "apply", "--config", str(grow)]) == 0
            during = load.during
        out = capsys.readouterr().out
        assert "epoch 5: stable on n1, n2, n3, n4, n5, n6" in out, out
        assert "no longer owns" in out, out
        assert re.search(r"n\d -> n6 +\d+ keys +done", out), out  # the progress lines
        assert during > 20 and not load.errors, load.errors[:3]  # the change ran under load
        _check_nothing_lost(desired.config, load.acked)
        ring = Ring([*nodes, "n6"], desired.config.vnodes)
        for node in [*nodes, "n6"]:
            _holds_what_it_owns(desired, node, ring, desired.config.n, list(load.acked))
        # idempotent: a second apply has nothing to do
        assert main(["cluster", "apply", "--config", str(grow)]) == 0
        assert "done: epoch 5" in capsys.readouterr().out
        assert {desired.status(n).ring.epoch for n in [*nodes, "n6"]} == {5}
    finally:
        desired.load_state()
        desired.stop()


def test_removing_a_node_under_load_and_a_refused_second_change(
    start_cluster: ClusterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = start_cluster()
    shrink = config_with_nodes(cluster, ["n1", "n3", "n4", "n5"], 0, "shrink.toml")
    desired = LocalCluster(config_mod.load(shrink), shrink)
    with Load(cluster, "quorum") as load:
        assert main(["cluster", "apply", "--config", str(shrink)]) == 0
    out = capsys.readouterr().out
    assert "stable on n1, n3, n4, n5" in out and "stopping n2" in out, out
    _check_nothing_lost(desired.config, load.acked)
    ring = Ring(["n1", "n3", "n4", "n5"], desired.config.vnodes)
    for node in ("n1", "n3", "n4", "n5"):
        _holds_what_it_owns(desired, node, ring, desired.config.n, list(load.acked))
    # N=3 of 4 left: removing two more would leave fewer than N
    two = config_with_nodes(cluster, ["n1", "n3"], 0, "two.toml")
    assert main(["cluster", "apply", "--config", str(two)]) == 2  # the config itself


def test_replacing_a_dead_node_streams_its_ranges_from_the_survivors(
    start_cluster: ClusterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = start_cluster()
    swap = config_with_nodes(cluster, ["n1", "n2", "n4", "n5"], 1, "swap.toml")
    desired = LocalCluster(config_mod.load(swap), swap)
    try:
        with Load(cluster, "quorum") as load:
            cluster.kill("n3")  # gone for good, mid-load
            assert main(["cluster", "apply", "--config", str(swap), "--dead", "n3"]) == 0
        out = capsys.readouterr().out
        assert "stable on n1, n2, n4, n5, n6" in out, out
        assert "n3 ->" not in out, out  # never a source
        _check_nothing_lost(desired.config, load.acked)
        members = ["n1", "n2", "n4", "n5", "n6"]
        ring = Ring(members, desired.config.vnodes)
        for node in members:
            _holds_what_it_owns(desired, node, ring, desired.config.n, list(load.acked))
    finally:
        desired.load_state()
        desired.stop()


def test_an_operator_killed_mid_apply_is_finished_by_the_next_apply(
    start_cluster: ClusterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator dies while it streams (throttled so it is still at it); a second
    apply resumes the change from the epoch the nodes are on and finishes it."""
    cluster = start_cluster()
    nodes = [n.id for n in cluster.config.nodes]
    grow = config_with_nodes(cluster, nodes, 1, "grow.toml")
    desired = LocalCluster(config_mod.load(grow), grow)
    command = [sys.executable, "-m", "kvstore", "cluster", "apply", "--config", str(grow)]
    try:
        with Load(cluster, "linearizable") as load:
            operator = subprocess.Popen(
                [*command, "--rate", "20"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                assert operator.stdout is not None
                seen = []
                for line in operator.stdout:  # until it is streaming
                    seen.append(line)
                    if "writes to both rings" in line:
                        break
                time.sleep(1.0)
                assert operator.poll() is None, "".join(seen)
            finally:
                operator.kill()
                operator.wait(timeout=10)
            assert {cluster.status(n).ring.phase for n in nodes} == {"write-both"}
            # status shows the change: the epoch, the pending ranges, n6's streams so far
            capsys.readouterr()
            main(["cluster", "status", "--config", str(grow), "--json"])
            view = json.loads(capsys.readouterr().out)["ring"]
            assert [e["nodes"] for e in view["epochs"]] == [[*nodes, "n6"]], view
            change = view["change"]
            assert (change["epoch"], change["phase"]) == (2, "write-both"), change
            assert change["ranges_moving"] > 0 and 0 < change["share_moving"] < 1, change
            got = [s for s in change["streams"] if s["to"] == "n6"]
            assert got and not all(s["done"] for s in got), change  # killed mid-stream
            # plan shows the change under way, and refuses to plan another
            assert main(["cluster", "plan", "--config", str(grow), "--json"]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert (shown["phase"], shown["added"], shown["epoch"]) == ("write-both", ["n6"], 2)
            assert main(["cluster", "plan", "--config", str(cluster.config_path), "--json"]) == 1
            assert "is under way" in json.loads(capsys.readouterr().out)["refused"]
            assert main(["cluster", "apply", "--config", str(grow)]) == 0
        out = capsys.readouterr().out
        assert "stable on n1, n2, n3, n4, n5, n6" in out, out
        _check_nothing_lost(desired.config, load.acked)
        ring = Ring([*nodes, "n6"], desired.config.vnodes)
        _holds_what_it_owns(desired, "n6", ring, desired.config.n, list(load.acked))
    finally:
        desired.load_state()
        desired.stop()
