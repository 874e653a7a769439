"""Fine-grained latency histograms that cost one bisect per observation.

``prometheus_client``'s ``Histogram.observe`` walks its bounds one by one under a lock:
fine for a dozen buckets, not for the 45 the WARS legs need, observed three times per
replica request. These keep plain per-bucket counts, and a collector turns them into
ordinary Prometheus histograms (cumulative ``_bucket``, ``_count``, ``_sum``) at scrape
time.

Rules: bounds ascend and end below +Inf (the +Inf bucket is implicit); a value equal to
a bound falls in that bound's bucket (Prometheus's ``le``); label values are given in
``labels`` order. Observations come from the event loop and scrapes from the HTTP
thread: a scrape copies each count list in one step under the GIL, so its buckets and
its count always agree, and its sum may miss the last observation or two.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


class FineHistograms(Collector):
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be distinct and ascending")
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.bounds = tuple(bounds)
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, values: tuple[str, ...], seconds: float) -> None:
        counts = self._counts.get(values)
        if counts is None:
            counts = self._counts[values] = [0] * (len(self.bounds) + 1)
            self._sums[values] = 0.0
        counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self._sums[values] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, counts in sorted(dict(self._counts).items()):
            snapshot = list(counts)
            running, buckets = 0, []
            for bound, count in zip(self.bounds, snapshot, strict=False):
                running += count
                buckets.append((repr(bound), float(running)))
            buckets.append(("+Inf", float(running + snapshot[-1])))
            family.add_metric(list(values), buckets, self._sums.get(values, 0.0))
        yield family
