"""``tls = "off"``: the explicit opt-out works, and says so loudly."""

from __future__ import annotations

from pathlib import Path

from kvstore import SyncClient
from kvstore import config as config_mod
from kvstore.cluster.local import LocalCluster
from tests.cluster.conftest import make_config


def test_tls_off_serves_plaintext_and_logs_it(tmp_path: Path) -> None:
    path = make_config(tmp_path, nodes=3, engine="memory")
    path.write_text(path.read_text() + '\n[tls]\nmode = "off"\n')
    cfg = config_mod.load(path)
    assert not cfg.tls_config.enabled
    cluster = LocalCluster(cfg, path)
    try:
        cluster.start()
        with SyncClient([n.address for n in cfg.nodes], n=cfg.n) as client:  # no tls=
            client.put("k", "v", w="all")
            assert client.get("k", r="all") == b"v"
        assert not cluster.status("n1").tls
        assert "TLS IS OFF" in cluster.nodes["n1"].log.read_text()
        assert not (tmp_path / "run" / "certs").exists()  # nothing was made
    finally:
        cluster.stop()
