"""A real Prometheus server scrapes every node's /metrics (Debian's ``prometheus``).

``scripts/setup.sh`` installs it when run as root; elsewhere this test skips and says
so (the expositions are still parsed with ``prometheus_client``'s parser in
tests/cluster/test_predict.py and tests/unit/test_headlines.py). The server is started
on loopback by the test, scrapes once a second, and is stopped by PID even on failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kvstore import SyncClient
from kvstore.cluster.local import free_ports
from tests.cluster.conftest import ClusterFactory

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no prometheus binary (Debian's prometheus; scripts/setup.sh installs it as root)",
)


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=2) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def _value(port: int, expr: str) -> float | None:
    result = _query(port, expr)
    return float(result[0]["value"][1]) if result else None


def _wait_for(what: str, check: Any, timeout_s: float = 40.0) -> Any:
    end = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except OSError as exc:  # the server is still starting
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"prometheus never showed {what}: last answer {last!r}")


def test_a_real_prometheus_scrapes_a_histogram_and_a_counter_from_every_node(
    start_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = start_cluster(metrics=True)
    targets = [node.metrics for node in cluster.config.nodes]
    assert all(targets)
    with SyncClient.from_config(cluster.config) as client:
        for i in range(30):
            client.put(f"k{i}", "v", w="all")
            client.get(f"k{i}", r="all")
    (port,) = free_ports(1)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: kvstore\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    assert PROMETHEUS is not None
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        up = _wait_for(
            "every node up",
            lambda: _value(port, 'sum(up{job="kvstore"})') == len(targets),
        )
        assert up
        # the counter: every call counted once, by the node that coordinated it
        puts = _wait_for(
            "the puts counted",
            lambda: _value(port, 'sum(kvstore_requests_total{op="put",outcome="ok"})'),
        )
        assert puts == 30
        # the histogram: its buckets and its count, per operation
        count = _value(port, 'sum(kvstore_request_duration_seconds_count{op="get"})')
        assert count == 30
        buckets = _query(port, 'sum by (le) (kvstore_request_duration_seconds_bucket{op="put"})')
        by_le = {r["metric"]["le"]: float(r["value"][1]) for r in buckets}
        assert by_le["+Inf"] == 30 and len(by_le) > 5
        legs = _query(port, "sum by (leg) (kvstore_replica_leg_seconds_count)")
        assert {r["metric"]["leg"] for r in legs} == set("WARS")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
