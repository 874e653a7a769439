"""Status headlines: histogram quantiles as Prometheus computes them, from real metrics."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from kvstore.cluster.headlines import headlines, quantile, scrape_headlines

BOUNDS = (0.001, 0.002, 0.005, 0.01, 0.05, math.inf)


def _cumulative(values: list[float]) -> dict[float, float]:
    return {b: float(sum(v <= b for v in values)) for b in BOUNDS}


def test_exact_on_a_known_histogram() -> None:
    # 10 observations in (0.001, 0.002], 10 in (0.002, 0.005]
    buckets = {0.001: 0.0, 0.002: 10.0, 0.005: 20.0, math.inf: 20.0}
    assert quantile(buckets, 0.5) == 0.002
    assert math.isclose(quantile(buckets, 0.25) or 0, 0.0015)
    assert math.isclose(quantile(buckets, 0.75) or 0, 0.0035)
    assert quantile({0.001: 0.0, math.inf: 0.0}, 0.5) is None
    assert quantile({0.01: 0.0, math.inf: 3.0}, 0.99) == 0.01  # beyond the last bound


@given(st.lists(st.floats(0.0, 0.2), min_size=1, max_size=60), st.sampled_from([0.5, 0.9, 0.99]))
def test_the_quantile_lies_in_the_bucket_of_the_true_one(values: list[float], q: float) -> None:
    got = quantile(_cumulative(values), q)
    assert got is not None
    ordered = sorted(values)
    true = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    upper = next(b for b in BOUNDS if true <= b)
    lower = max([0.0, *(b for b in BOUNDS if b < upper)])
    if math.isinf(upper):
        assert got == lower
    else:
        assert lower <= got <= upper, (got, true, lower, upper)


def test_headlines_of_a_registry_like_a_nodes() -> None:
    registry = CollectorRegistry()
    latency = Histogram(
        "kvstore_request_duration_seconds", "", ["op", "consistency"], registry=registry
    )
    legs = Histogram("kvstore_replica_leg_seconds", "", ["leg", "peer"], registry=registry)
    for _ in range(99):
        latency.labels("put", "w2").observe(0.003)
    latency.labels("put", "w3").observe(0.2)  # summed over consistency levels
    for leg in "WARS":
        legs.labels(leg, "n2").observe(0.0004)
    got = headlines(generate_latest(registry).decode())
    put = got["latency_ms"]["put"]
    assert put["count"] == 100
    assert 2.5 <= put["p50"] <= 5.0 and put["p99"] <= 5.0  # the one slow call is the 100th
    assert "get" not in got["latency_ms"]  # nothing observed: no figure, not 0
    assert set(got["legs_p99_ms"]) == set("WARS")


def test_a_node_without_metrics_has_a_reason_not_figures() -> None:
    assert "no metrics address" in scrape_headlines(None)["why"]
    why = scrape_headlines("127.0.0.1:9", timeout_s=0.5)["why"]  # discard port: refused
    assert "cannot scrape http://127.0.0.1:9/metrics" in why
