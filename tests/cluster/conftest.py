"""Real local clusters for tests: node processes on free loopback ports, temp data dirs.

Every cluster a test starts is stopped by PID in the fixture's teardown, even when the
test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kvstore import config as config_mod
from kvstore.cluster.local import LocalCluster, free_ports, write_local_config

pytestmark = pytest.mark.cluster


def make_config(
    tmp: Path, *, nodes: int = 5, n: int = 3, engine: str = "sqlite", **cluster: Any
) -> Path:
    fields: dict[str, Any] = {"request_timeout_ms": 2000, "vnodes": 16, **cluster}
    return write_local_config(tmp, nodes=nodes, name="test", n=n, engine=engine, **fields)


ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []

    def factory(**options: object) -> LocalCluster:
        folder = tmp_path / f"c{len(started)}"
        folder.mkdir()
        path = make_config(folder, **options)  # type: ignore[arg-type]
        cluster = LocalCluster(config_mod.load(path), path, enable_faults=True)
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
    cluster = LocalCluster(config_mod.load(path), path, enable_faults=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def config_with_nodes(cluster: LocalCluster, keep: list[str], add: int, name: str) -> Path:
    """A copy of ``cluster``'s config (beside it) with only the ``keep`` nodes and ``add``
    new ones (n6, n7, ... on free ports): a desired membership for plan and apply."""
    head, *blocks = cluster.config_path.read_text().split("[[nodes]]")
    kept = [b for b in blocks if any(f'id = "{node}"' in b for node in keep)]
    new = [
        f'\nid = "n{6 + i}"\naddress = "127.0.0.1:{port}"\ndata_dir = "data/n{6 + i}"\n\n'
        for i, port in enumerate(free_ports(add))
    ]
    path = cluster.config_path.with_name(name)
    path.write_text(head + "".join(f"[[nodes]]{b}" for b in [*kept, *new]))
    return path
