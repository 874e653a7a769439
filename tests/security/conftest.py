"""A real mutual-TLS cluster started as production runs it (fault injection off), plus
extra certificates made with the cluster's CA: a reader, a writer, a stranger from
another CA, an expired admin, and a node certificate for a node the cluster lacks.

Every process is stopped by PID in the fixture's teardown, even when a test fails.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.cluster.local import LocalCluster
from kvstore.security import certs
from kvstore.security.tls import TLSFiles
from tests.cluster.conftest import make_config

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class Secure:
    cluster: LocalCluster
    folder: Path  # the cluster's certificates (and its CA key)
    stranger_ca: Path  # another CA's folder

    @property
    def config(self) -> config_mod.ClusterConfig:
        return self.cluster.config

    def client(self, name: str) -> TLSFiles:
        paths = certs.client_paths(self.folder, name)
        return TLSFiles(certs.ca_paths(self.folder).cert, paths.cert, paths.key)

    def node(self, node_id: str) -> TLSFiles:
        paths = certs.node_paths(self.folder, node_id)
        return TLSFiles(certs.ca_paths(self.folder).cert, paths.cert, paths.key)

    def stranger(self) -> TLSFiles:
        """Files consistent in themselves, from another CA: refused only by the node."""
        paths = certs.client_paths(self.stranger_ca, "mallory")
        return TLSFiles(certs.ca_paths(self.stranger_ca).cert, paths.cert, paths.key)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    root = tmp_path_factory.mktemp("secure")
    path = make_config(root)
    cluster = LocalCluster(config_mod.load(path), path)  # no --enable-faults
    folder = cluster.config.tls_config.certs_dir
    try:
        cluster.start()
        certs.issue_client(folder, "reader", "read")
        certs.issue_client(folder, "writer", "write")
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        certs.issue_client(folder, "expired", "admin", days=1, not_before=past)
        certs.issue_node(folder, "n9", ["127.0.0.1"])  # signed by our CA, not a member
        stranger = root / "stranger"
        certs.init_ca(stranger)
        certs.issue_client(stranger, "mallory", "admin")
        yield Secure(cluster, folder, stranger)
    finally:
        cluster.stop()
