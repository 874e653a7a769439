"""Headline figures from one node's Prometheus metrics, for ``kvstore cluster status``.

Rules:
- Quantiles come from histogram buckets the way Prometheus's ``histogram_quantile``
  computes them: the bucket holding the rank, linearly within it (a rank in the +Inf
  bucket is reported as the last finite bound, a lower bound on the truth).
- Figures are since the node started (histograms are cumulative), per operation summed
  over consistency levels; an operation with no observations has no figure, not 0.
- A node without a metrics address, or whose scrape fails, has no headlines; the
  reason is kept, and status carries on with what the admin call said.
"""

from __future__ import annotations

import math
import urllib.request
from typing import Any

from kvstore.cluster.predict import LEGS, cumulative_buckets, families

LATENCY = "kvstore_request_duration_seconds"
QUANTILES = (0.5, 0.99)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """``q`` of a cumulative histogram {upper bound: count at or below}; None if empty."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    below, start = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return start
            width = count - below
            return start + (bound - start) * ((rank - below) / width if width > 0 else 1.0)
        below, start = count, bound
    return start


def headlines(text: str) -> dict[str, Any]:
    """{"latency_ms": {op: {"p50", "p99", "count"}}, "legs_p99_ms": {W, A, R, S}}."""
    parsed = families([text])  # once, for both histograms
    latency: dict[str, Any] = {}
    for op, buckets in sorted(cumulative_buckets(parsed, LATENCY, "op").items()):
        figures = {f"p{round(q * 100)}": quantile(buckets, q) for q in QUANTILES}
        if all(v is not None for v in figures.values()):
            latency[op] = {k: round(v * 1000, 3) for k, v in figures.items() if v is not None}
            latency[op]["count"] = int(max(buckets.values()))
    legs: dict[str, float] = {}
    for leg, buckets in sorted(cumulative_buckets(parsed, LEGS, "leg").items()):
        p99 = quantile(buckets, 0.99)
        if p99 is not None:
            legs[leg] = round(p99 * 1000, 3)
    return {"latency_ms": latency, "legs_p99_ms": legs}


def scrape_headlines(address: str | None, timeout_s: float = 1.0) -> dict[str, Any]:
    """One node's headlines, or {"why": ...} when it has none."""
    if address is None:
        return {"why": "no metrics address in the config"}
    url = f"http://{address}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8")
        return headlines(text)
    except (OSError, ValueError) as exc:
        return {"why": f"cannot scrape {url}: {exc}"}
