"""A node's Prometheus metrics (``prometheus_client``), served on its ``metrics`` address.

Rules and invariants:
- Names follow Prometheus conventions: a ``kvstore_`` prefix, base units (seconds),
  ``_total`` for counters. Label values are bounded: operations are put/get/delete,
  outcomes the error taxonomy's codes, consistency the resolved level (``r<k>``/``w<k>``
  with k in 1..N, or ``linearizable``) or ``invalid``, so no caller can grow the series.
- Every counter the node keeps (``Node.counters``: hints, repair, refusals, ...) is
  exported as ``kvstore_events_total{event=...}``, read at scrape time, so nothing is
  counted twice or kept twice.
- Scrapes run on prometheus_client's HTTP thread; they read copies (a dict copy is one
  step under the GIL) and never touch the event loop.
- Replica round trips (``kvstore_replica_round_trip_seconds{op,peer}``) are timed on the
  coordinator's own clock from sending a request to its answer, and every reply carries
  the replica's service time on the replica's clock, so no clocks need to agree. The
  WARS legs (``kvstore_replica_leg_seconds{leg,peer}``, Bailis et al.) split the
  network's share (round trip less service) in half: an assumption (symmetric links)
  that a predictor must state. A coordinator's own replica is timed apart
  (``kvstore_replica_local_seconds{op}``): it has no network share.
- The endpoint is plain HTTP and read-only, meant for a scraper on a trusted network;
  bind it to loopback (the default in the local configs) or firewall it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kvstore.node.fine_histograms import FineHistograms

if TYPE_CHECKING:
    from kvstore.node.runtime import Node

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# The replica legs feed PBS, which samples within a bucket uniformly: buckets a factor
# of 2-2.5 wide invent spread between replicas that the latencies do not have (W's of
# 2.1 and 2.2 ms become anything in 2-5 ms), and staleness is made of such differences.
# 25% steps from 0.1 ms to 2 s keep a sample within 25% of what was observed.
LEG_BUCKETS = tuple(round(0.0001 * 1.25**i, 7) for i in range(45))


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        node = self.node
        events = CounterMetricFamily(
            "kvstore_events", "Events the node counted, by name", labels=["event"]
        )
        for name, value in sorted(dict(node.counters).items()):
            events.add_metric([name], value)
        yield events
        yield GaugeMetricFamily(
            "kvstore_inflight_calls", "Client calls this node coordinates now", node.inflight
        )
        pending = GaugeMetricFamily(
            "kvstore_peer_pending_requests",
            "Requests sent to a peer and not answered yet",
            labels=["peer"],
        )
        for peer, link in sorted(node.links.items()):
            pending.add_metric([peer], link.pending_count)
        yield pending
        hints = GaugeMetricFamily(
            "kvstore_hints_pending",
            "Hints this node holds for a down owner (as of the last handoff tick)",
            labels=["owner"],
        )
        for owner, count in sorted(dict(node.hints_pending).items()):
            hints.add_metric([owner], count)
        yield hints
        queued = getattr(node.base_engine, "queued", None)
        if isinstance(queued, int):
            yield GaugeMetricFamily(
                "kvstore_storage_queued_calls", "Storage calls waiting or running now", queued
            )
        offset = node.clock_guard.offset_us(node.time.monotonic())
        if offset is not None:
            yield GaugeMetricFamily(
                "kvstore_clock_offset_seconds",
                "This node's clock minus its peers' (median of heartbeat estimates)",
                offset / 1e6,
            )


class NodeMetrics:
    """The node's registry, its request metrics, and the HTTP endpoint."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kvstore_requests",
            "Client calls this node coordinated, by operation and outcome",
            ["op", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kvstore_request_duration_seconds",
            "Time to answer a client call that succeeded, by operation and consistency",
            ["op", "consistency"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.round_trips = Histogram(
            "kvstore_replica_round_trip_seconds",
            "Coordinator's send of a replica request to its answer (W+A for writes, R+S "
            "for reads), on the coordinator's clock",
            ["op", "peer"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        # fine buckets, observed three times per replica request: bisected, not walked
        self.legs = FineHistograms(
            "kvstore_replica_leg_seconds",
            "PBS's WARS legs per replica: W (send to the write applied at the replica), "
            "A (its ack back), R (send to the read answered at the replica), S (the answer "
            "back); the replica's service time is on its clock, the round trip on this "
            "node's, and the network's share is split in half",
            ["leg", "peer"],
            LEG_BUCKETS,
        )
        self.local_service = FineHistograms(
            "kvstore_replica_local_seconds",
            "A coordinator's own replica's work for a call it coordinates (no network): "
            "the W (op write) and R (op read) of PBS's coordinator-local replica",
            ["op"],
            LEG_BUCKETS,
        )
        self.registry.register(self.legs)
        self.registry.register(self.local_service)
        self.registry.register(_NodeCollector(node))
        self._server: Any = None
        # label children by label values: labels() costs a lock and a tuple per call
        self._counted: dict[tuple[str, str], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}
        self._trips: dict[tuple[str, str], tuple[Any, tuple[str, str], tuple[str, str]]] = {}
        self._now = node.time.monotonic

    def observe(self, op: str, consistency: str, outcome: str, seconds: float) -> None:
        counter = self._counted.get((op, outcome))
        if counter is None:
            counter = self._counted[(op, outcome)] = self.requests.labels(op, outcome)
        counter.inc()
        if outcome == "ok":
            timed = self._timed.get((op, consistency))
            if timed is None:
                timed = self._timed[(op, consistency)] = self.latency.labels(op, consistency)
            timed.observe(seconds)

    def local(self, op: str, seconds: float) -> None:
        self.local_service.observe((op,), seconds)

    def round_trip(self, op: str, peer: str, sent: float, service: float) -> None:
        """A replica request sent at ``sent`` (this node's clock) is answered now, after
        ``service`` seconds at the replica (its clock). Each clock only ever measures
        its own durations; the one-way legs are half of what the network took (the round
        trip less the service time), NTP's symmetric-path assumption."""
        rtt = self._now() - sent
        one_way = max(rtt - service, 0.0) / 2
        timers = self._trips.get((op, peer))
        if timers is None:
            request, answer = ("W", "A") if op == "write" else ("R", "S")
            timers = self._trips[(op, peer)] = (
                self.round_trips.labels(op, peer),
                (request, peer),
                (answer, peer),
            )
        timers[0].observe(rtt)
        self.legs.observe(timers[1], one_way + min(service, rtt))  # there, and the work
        self.legs.observe(timers[2], one_way)

    def serve(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._server, _thread = start_http_server(int(port), host, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
