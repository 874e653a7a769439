"""Real network partitions: namespaces, a bridge and iptables (root only; skips elsewhere)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvstore.cluster.netns import NetnsNetwork, unavailable_reason
from tests.harness.test_runs import run

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(REASON is not None, reason=f"real partitions: {REASON}"),
]

CONNECT = (
    "import socket,sys; s=socket.socket(); s.settimeout(0.5)\n"
    "try: s.connect((sys.argv[1], 7100)); print('open')\n"
    "except OSError: print('cut')\n"
)


@pytest.fixture
def network() -> Iterator[NetnsNetwork]:
    net = NetnsNetwork("t0", ["a", "b", "c"])
    try:
        net.create()
        yield net
    finally:
        net.teardown()
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "kvt0" not in leftovers


def reach(net: NetnsNetwork, src: str, dst: str) -> str:
    result = subprocess.run(
        [*net.command(src), sys.executable, "-c", CONNECT, net.ip[dst]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip()


def test_iptables_rules_cut_and_heal_real_connections(network: NetnsNetwork) -> None:
    listener = subprocess.Popen(
        [*network.command("b"), sys.executable, "-c",
         f"import socket,time; s=socket.socket(); s.bind(('{network.ip['b']}', 7100)); "
         "s.listen(); time.sleep(30)"],
    )  # fmt: skip
    try:
        for _ in range(50):  # wait for the listener, with a bound
            if reach(network, "a", "b") == "open":
                break
        assert reach(network, "a", "b") == "open"
        network.cut("b", ["a"])
        assert reach(network, "a", "b") == "cut"
        assert reach(network, "c", "b") == "open"  # only the pair named is cut
        network.heal()
        assert reach(network, "a", "b") == "open"
    finally:
        listener.kill()
        listener.wait()


def test_harness_uses_real_partitions_and_linearizable_holds(tmp_path: Path) -> None:
    results = run(tmp_path, "linearizable", ["partition"], seed=4, partitions="netns")
    assert results["options"]["partition_mechanism"] == "netns-iptables"
    assert results["verdict"] == "held", results["reasons"]
    history = (Path(results["folder"]) / "history.jsonl").read_text()
    assert '"mechanism":"netns-iptables"' in history
    assert results["ops"].get("fail", 0) > 0, "a partition should make some ops fail"
