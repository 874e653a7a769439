"""``kvstore predict``: from a real cluster's scraped round trips, and from snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from kvstore import Client
from kvstore.cli import main
from kvstore.cluster import commands
from kvstore.cluster.local import LocalCluster
from kvstore.cluster.predict import parse_legs, parse_round_trips, replicas_from
from kvstore.core.pbs import Distribution
from tests.cluster.conftest import ClusterFactory


def _exposition(
    observations: dict[str, list[float]],
    metric: str = "kvstore_replica_round_trip_seconds",
    label: str = "op",
) -> str:
    """A node's text exposition of one histogram, observations alternating two peers."""
    registry = CollectorRegistry()
    h = Histogram(metric, "h", [label, "peer"], buckets=(0.001, 0.002, 0.005), registry=registry)
    for value, values in observations.items():
        for i, v in enumerate(values):
            h.labels(value, f"n{i % 2 + 1}").observe(v)
    return generate_latest(registry).decode()


def test_scraped_histograms_sum_over_peers_and_nodes_into_bucket_counts() -> None:
    one = _exposition({"write": [0.0005, 0.0015, 0.003], "read": [0.0005]})
    two = _exposition({"write": [0.0005, 0.009], "read": [0.0015]})
    got = parse_round_trips([one, two])
    assert got["write"] == {"bounds": [0.001, 0.002, 0.005], "counts": [2.0, 1.0, 2.0]}
    assert got["read"] == {"bounds": [0.001, 0.002, 0.005], "counts": [1.0, 1.0, 0.0]}
    assert len(replicas_from(got, 3)) == 3


def _legs(values: dict[str, float]) -> str:
    return _exposition(
        {leg: [v] for leg, v in values.items()}, "kvstore_replica_leg_seconds", "leg"
    )


def test_measured_legs_are_used_and_halves_only_without_them() -> None:
    rtt = parse_round_trips([_exposition({"write": [0.004], "read": [0.004]})])
    legs = parse_legs([_legs({"W": 0.0015, "A": 0.0005, "R": 0.0045, "S": 0.0005})])
    replica = replicas_from(rtt, 3, legs)[0]
    assert replica.w == Distribution((0.001, 0.002, 0.005), (0.0, 1.0, 0.0))
    assert replica.a == Distribution((0.001, 0.002, 0.005), (1.0, 0.0, 0.0))
    assert replica.r == Distribution((0.001, 0.002, 0.005), (0.0, 0.0, 1.0))
    # a leg missing (older nodes): every leg is half a round trip
    partial = parse_legs([_legs({"W": 0.0015, "A": 0.0005})])
    half = Distribution((0.0005, 0.001, 0.0025), (0.0, 0.0, 1.0))
    assert replicas_from(rtt, 3, partial)[0].w == half
    assert replicas_from(rtt, 3, None)[0].s == half


def test_no_traffic_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="run some traffic"):
        replicas_from(parse_round_trips([_exposition({"write": [0.001]})]), 3)


def _snapshot(tmp_path: Path) -> Path:
    rtt = {"bounds": [0.0005, 0.001, 0.002, 0.01], "counts": [10, 50, 30, 10]}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"n": 3, "round_trips": {"write": rtt, "read": rtt}}))
    return path


def test_a_snapshot_predicts_every_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", "--snapshot", str(_snapshot(tmp_path)), "--json", "--trials", "3000"]
    assert main([*args, "--t-ms", "0,1,10", "--budget-p99-ms", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    settings = {(s["r"], s["w"]): s for s in out["settings"]}
    assert sorted(settings) == [(r, w) for r in (1, 2, 3) for w in (1, 2, 3)]
    for (r, w), s in settings.items():
        if r + w > 3:
            assert set(s["p_consistent"].values()) == {1.0}
    assert settings[(1, 1)]["p_consistent"]["0.0"] < 1.0
    assert [s for s in out["settings"] if s["freshest_in_budget"]]
    assert "symmetric" in out["assumptions"]


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["predict", "--snapshot", str(_snapshot(tmp_path)), "--t-ms", "a"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["predict", "--snapshot", str(bad)]) == 2


async def _write_and_read_all(cluster: LocalCluster, n: int) -> None:
    """n keys written and read at ALL: every replica's round trip lands in the metrics."""
    async with Client.from_config(cluster.config) as client:
        for i in range(n):
            await client.put(f"k{i}", "v", w="all")
            await client.get(f"k{i}", r="all")


async def test_the_live_cluster_is_scraped_and_predicted(
    start_cluster: ClusterFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = start_cluster(metrics=True)
    await _write_and_read_all(cluster, 60)
    saved = tmp_path / "saved.json"
    args = ["predict", "--config", str(cluster.config_path), "--json", "--trials", "2000"]
    assert main([*args, "--save", str(saved)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["settings"]) == 9
    snapshot = json.loads(saved.read_text())
    assert sum(snapshot["round_trips"]["write"]["counts"]) >= 60 * 2  # two remote replicas
    legs = snapshot["legs"]
    for leg, op in (("W", "write"), ("A", "write"), ("R", "read"), ("S", "read")):
        # one leg of each kind per replica round trip
        assert sum(legs[leg]["counts"]) == sum(snapshot["round_trips"][op]["counts"]), leg
    again = ["predict", "--snapshot", str(saved), "--json", "--trials", "2000"]
    assert main(again) == 0
    assert json.loads(capsys.readouterr().out)["settings"] == out["settings"]  # same seed


async def test_cluster_status_shows_the_headline_figures(
    start_cluster: ClusterFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = start_cluster(metrics=True)
    await _write_and_read_all(cluster, 40)
    capsys.readouterr()
    assert main(["cluster", "status", "--config", str(cluster.config_path), "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    puts = sum(n["metrics"]["latency_ms"].get("put", {}).get("count", 0) for n in nodes)
    assert puts == 40  # every call counted once, by the node that coordinated it
    for node in nodes:
        for figures in node["metrics"]["latency_ms"].values():
            assert 0 < figures["p50"] <= figures["p99"]
        assert set(node["metrics"]["legs_p99_ms"]) == set("WARS")  # all replicated at all
    monkeypatch.setattr(commands.console, "width", 300)  # a wide terminal: one line a row
    assert main(["cluster", "status", "--config", str(cluster.config_path)]) == 0
    table = capsys.readouterr().out
    assert "put p50/p99 ms" in table and "replica W/R p99" in table
