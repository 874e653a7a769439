"""``write_local_config``: the file it writes always loads, with every port distinct."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.cluster import local


def _reusing_kernel(count: int) -> list[int]:
    """What the kernel may do once a call's sockets are closed: hand out the same ports
    again to the next call."""
    return [41000 + i for i in range(count)]


@pytest.mark.parametrize("metrics", [False, True])
def test_node_and_metrics_ports_are_distinct_even_when_the_kernel_reuses_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics: bool
) -> None:
    monkeypatch.setattr(local, "free_ports", _reusing_kernel)
    cfg = config_mod.load(local.write_local_config(tmp_path, nodes=5, metrics=metrics))
    ports = [n.address for n in cfg.nodes] + [n.metrics for n in cfg.nodes if n.metrics]
    assert len(ports) == (10 if metrics else 5)
    assert len(set(ports)) == len(ports)


def test_given_addresses_get_metrics_ports_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "free_ports", _reusing_kernel)
    addresses = ["10.9.0.1:7000", "10.9.0.2:7000", "10.9.0.3:7000"]
    cfg = config_mod.load(local.write_local_config(tmp_path, addresses=addresses, metrics=True))
    assert [n.address for n in cfg.nodes] == addresses
    assert sorted(n.metrics for n in cfg.nodes if n.metrics) == [
        f"127.0.0.1:{41000 + i}" for i in range(3)
    ]
