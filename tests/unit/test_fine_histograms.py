"""The bisected histograms expose exactly what prometheus_client's own would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kvstore.node.fine_histograms import FineHistograms

BOUNDS = (0.001, 0.002, 0.005, 0.01)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            labels = tuple(
                sorted((k, str(float(v)) if k == "le" else v) for k, v in s.labels.items())
            )
            out[(s.name, labels)] = round(s.value, 9)
    return out


@given(
    st.lists(
        st.tuples(st.sampled_from(["W", "A"]), st.sampled_from([*BOUNDS, 0.0, 0.0015, 9.0])),
        max_size=40,
    )
)
def test_same_exposition_as_prometheus_clients_histogram(
    observations: list[tuple[str, float]],
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    model = Histogram("h_seconds", "h", ["leg"], buckets=BOUNDS, registry=theirs)
    fine = FineHistograms("h_seconds", "h", ["leg"], BOUNDS)
    ours.register(fine)
    for leg, value in observations:
        model.labels(leg).observe(value)
        fine.observe((leg,), value)
    expected = {k: v for k, v in _samples(theirs).items()}
    assert _samples(ours) == expected


def test_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        FineHistograms("h", "h", ["x"], (0.2, 0.1))
