"""Real local clusters for tests: node processes on free loopback ports, temp data dirs.

Every cluster a test starts is stopped by PID in the fixture's teardown, even when the
test fails.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.cluster.local import LocalCluster

pytestmark = pytest.mark.cluster


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def make_config(
    tmp: Path, *, nodes: int = 5, n: int = 3, engine: str = "sqlite", **cluster: object
) -> Path:
    ports = free_ports(nodes)
    lines = ["[cluster]", 'name = "test"', f"n = {n}", f'engine = "{engine}"', 'run_dir = "run"']
    lines += ["request_timeout_ms = 2000", "vnodes = 16"]
    for key, value in cluster.items():
        rendered = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else f'"{value}"'
            if isinstance(value, str)
            else str(value)
        )
        lines.append(f"{key} = {rendered}")
    for i, port in enumerate(ports, 1):
        lines += [
            "",
            "[[nodes]]",
            f'id = "n{i}"',
            f'address = "127.0.0.1:{port}"',
            f'data_dir = "data/n{i}"',
        ]
    path = tmp / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []

    def factory(**options: object) -> LocalCluster:
        folder = tmp_path / f"c{len(started)}"
        folder.mkdir()
        path = make_config(folder, **options)  # type: ignore[arg-type]
        cluster = LocalCluster(config_mod.load(path), path)
        started.append(cluster)
        cluster.start()
        return cluster

    try:
        yield factory
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One healthy cluster for tests that do not kill or pause anything."""
    folder = tmp_path_factory.mktemp("shared")
    path = make_config(folder)
    cluster = LocalCluster(config_mod.load(path), path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
