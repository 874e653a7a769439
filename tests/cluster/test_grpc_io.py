"""Node processes run gRPC on the I/O stack ``kvstore.net.grpc_io`` chooses, however they
are started, and an operator's own ``GRPC_EXPERIMENTS`` is kept.

What a process really started with is read from ``/proc/PID/environ`` (an exec replaces
it), never from the test's own environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.cluster.local import LocalCluster, pid_alive
from kvstore.net import grpc_io
from tests.cluster.conftest import make_config
from tests.cluster.helpers import wait_until

pytestmark = pytest.mark.cluster


def started_with(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


def test_a_local_cluster_starts_nodes_on_the_node_io_stack(shared_cluster: LocalCluster) -> None:
    for node in shared_cluster.nodes.values():
        assert started_with(node.pid).get(grpc_io.ENV) == grpc_io.NODE_EXPERIMENTS, node.node_id


def test_an_operators_setting_is_kept_and_a_node_started_by_hand_gets_the_node_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_config(tmp_path, nodes=1, n=1, r=1, w=1)
    cfg = config_mod.load(path)
    monkeypatch.setenv(grpc_io.ENV, "")  # an operator's choice: grpc's default stack
    cluster = LocalCluster(cfg, path)
    try:
        cluster.start()  # also makes the certificates the hand-started node needs below
        pid = cluster.nodes["n1"].pid
        assert started_with(pid)[grpc_io.ENV] == ""
        assert cluster.status("n1").node == "n1"  # it serves: no exec loop, no crash
    finally:
        cluster.stop()

    env = {k: v for k, v in os.environ.items() if k != grpc_io.ENV}
    node = subprocess.Popen(
        [sys.executable, "-m", "kvstore", "node", "--id", "n1", "--config", str(path)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: started_with(node.pid).get(grpc_io.ENV) == grpc_io.NODE_EXPERIMENTS,
            "the node to exec itself with the node's I/O stack",
        )
        assert node.poll() is None and pid_alive(node.pid)  # the same PID, still running
        cmdline = Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")
        assert b"node" in cmdline and str(path).encode() in cmdline  # the same arguments
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
