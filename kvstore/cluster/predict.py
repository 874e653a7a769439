"""``kvstore predict``: PBS predictions for every R and W, from the live cluster's replica
round trips or from a saved snapshot.

Rules:
- Input is each node's ``kvstore_replica_leg_seconds`` histograms (the WARS legs W, A,
  R and S of every replica request it coordinated), scraped from the ``metrics``
  addresses in the config and summed over every coordinator and peer. A leg is built
  from durations each measured on one clock (the round trip on the coordinator's, the
  replica's service time on the replica's), so no two clocks need to agree; splitting
  the network's share in half assumes symmetric links, and every replica is taken to
  draw from the same distribution. The output says so. From nodes (or snapshots) that
  have only ``kvstore_replica_round_trip_seconds``, each leg is half a round trip.
- Where calls are coordinated matters as much as the legs (``kvstore.core.pbs``'s
  ``Coordinators``): with ``kvstore_replica_local_seconds`` measured, a coordinator that
  holds a replica works on it without a hop. ``--coordinators primary`` (the default) is
  what the ring-aware client does: the key's first primary coordinates the write and the
  read; ``any`` is clients bound to any node (the harness's): N of the cluster's nodes
  hold a replica, and the write and the read go through independent ones.
- A scrape that fails names the node and its address; a cluster with no round trips yet
  (no traffic) is refused with what to do, not predicted from nothing.
- Snapshots are JSON (``--save``), so a prediction can be made again, or elsewhere.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from kvstore import config as config_mod
from kvstore.core.pbs import (
    Coordinators,
    Distribution,
    Prediction,
    Replica,
    freshest,
    predict_all,
    within_budget,
)

METRIC = "kvstore_replica_round_trip_seconds"
LEGS = "kvstore_replica_leg_seconds"
LOCAL = "kvstore_replica_local_seconds"
ASSUMPTIONS = (
    "W, A, R, S from each replica request's round trip (coordinator's clock) and the "
    "replica's service time (its clock), the network's share split in half (symmetric "
    "links); every replica draws from the cluster-wide distribution; no failures, read "
    "repair or hints (PBS's model)"
)
HALVES = (
    "W = A = half a write's replica round trip and R = S = half a read's (no legs "
    "measured; symmetric links); every replica draws from the cluster-wide distribution; "
    "no failures, read repair or hints (PBS's model)"
)
WHERE = {
    "primary": "the key's first primary coordinates the write and the read (ring-aware "
    "clients), its own replica without a hop",
    "any": "calls are coordinated by any node (clients bound to nodes), N of them hold a "
    "replica and work on it without a hop; the write's and the read's are independent",
    None: "coordinators are not modelled (no local replica times measured)",
}
Histograms = dict[str, dict[str, list[float]]]


Metrics = Sequence[str | Metric]  # Prometheus expositions (text) or families collected


def families(metrics: Metrics) -> list[Metric]:
    """Every metric family of ``metrics``, each text parsed once: parsing is the costly
    part (prometheus_client's parser is pure Python), so parse once, read many times."""
    out: list[Metric] = []
    for item in metrics:
        if isinstance(item, str):
            out.extend(text_string_to_metric_families(item))
        else:
            out.append(item)
    return out


def parse_round_trips(metrics: Metrics) -> Histograms:
    """Summed bucket counts per op from Prometheus expositions: {op: {bounds, counts}}."""
    return parse_histograms(metrics, METRIC, "op")


def parse_legs(metrics: Metrics) -> Histograms:
    """Summed bucket counts per WARS leg: {"W": {bounds, counts}, "A": ..., ...}."""
    return parse_histograms(metrics, LEGS, "leg")


def parse_local(metrics: Metrics) -> Histograms:
    """A coordinator's own replica's service times: {"write": ..., "read": ...}."""
    return parse_histograms(metrics, LOCAL, "op")


def pbs_inputs(metrics: Metrics) -> tuple[Histograms, Histograms, Histograms]:
    """The round trips, the legs and the local service times, the texts parsed once."""
    parsed = families(metrics)
    return parse_round_trips(parsed), parse_legs(parsed), parse_local(parsed)


def _missing(hists: Histograms | None, names: Sequence[str]) -> list[str]:
    """The ``names`` with no observation in ``hists``."""
    return [x for x in names if sum((hists or {}).get(x, {}).get("counts", [])) <= 0]


def _distribution(hists: Histograms, name: str) -> Distribution:
    return Distribution(tuple(hists[name]["bounds"]), tuple(hists[name]["counts"]))


def coordinators_from(
    local: Histograms | None, where: str, n: int, nodes: int
) -> Coordinators | None:
    """The coordinator model, or None when local service times were not measured."""
    if where not in ("primary", "any"):
        raise ValueError(f"--coordinators: {where!r} is not primary or any")
    if local is None or _missing(local, ("write", "read")):
        return None
    write, read = _distribution(local, "write"), _distribution(local, "read")
    if where == "primary":
        return Coordinators(write, read, 1.0, same=True)
    return Coordinators(write, read, min(1.0, n / max(nodes, 1)), same=False)


def model(
    round_trips: Histograms,
    legs: Histograms | None,
    local: Histograms | None,
    *,
    n: int,
    nodes: int,
    where: str,
) -> tuple[list[Replica], Coordinators | None, str]:
    """What PBS predicts from: the replicas, the coordinator model (or None), and the
    assumptions they rest on, in words."""
    replicas = replicas_from(round_trips, n, legs)
    coordinators = coordinators_from(local, where, n, nodes)
    base = HALVES if _missing(legs, "WARS") else ASSUMPTIONS
    return replicas, coordinators, f"{base}; {WHERE[where if coordinators else None]}"


def cumulative_buckets(metrics: Metrics, metric: str, label: str) -> dict[str, dict[float, float]]:
    """One histogram's cumulative buckets ({upper bound: count at or below}, +Inf
    included) summed over every exposition and every other label, per value of
    ``label``."""
    cumulative: dict[str, dict[float, float]] = {}
    for family in families(metrics):
        if family.name != metric:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            bound = float(sample.labels["le"])
            per_op = cumulative.setdefault(sample.labels.get(label, "?"), {})
            per_op[bound] = per_op.get(bound, 0.0) + sample.value
    return cumulative


def parse_histograms(metrics: Metrics, metric: str, label: str) -> Histograms:
    """One histogram's per-bucket counts summed over every exposition and every other
    label, per value of ``label``."""
    out: dict[str, dict[str, list[float]]] = {}
    for op, buckets in cumulative_buckets(metrics, metric, label).items():
        bounds = sorted(b for b in buckets if b != float("inf"))
        counts, previous = [], 0.0
        for bound in bounds:
            counts.append(buckets[bound] - previous)
            previous = buckets[bound]
        overflow = buckets.get(float("inf"), previous) - previous
        if overflow > 0 and bounds:
            counts[-1] += overflow  # beyond the last bucket: counted as the last bucket
        out[op] = {"bounds": bounds, "counts": counts}
    return out


def scrape(cfg: config_mod.ClusterConfig, timeout_s: float = 2.0) -> list[str]:
    texts = []
    for node in cfg.nodes:
        if node.metrics is None:
            continue
        url = f"http://{node.metrics}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                texts.append(response.read().decode("utf-8"))
        except OSError as exc:
            raise OSError(f"cannot scrape {node.id} at {url}: {exc}") from None
    if not texts:
        raise ValueError(
            "no node in the config serves metrics: give each [[nodes]] a metrics = "
            '"HOST:PORT" (or predict from a --snapshot)'
        )
    return texts


def replicas_from(round_trips: Histograms, n: int, legs: Histograms | None = None) -> list[Replica]:
    """N replicas drawing from the measured legs, or from halved round trips when no
    legs were measured (older nodes and snapshots)."""
    if legs is not None and not _missing(legs, "WARS"):
        w, a, r, s = (_distribution(legs, name) for name in "WARS")
        return [Replica(w, a, r, s) for _ in range(n)]
    missing = _missing(round_trips, ("write", "read"))
    if missing:
        raise ValueError(
            f"no replica round trips measured yet for {', '.join(missing)}: run some "
            f"traffic through the cluster first (every node counts its own)"
        )
    write = _distribution(round_trips, "write").scaled(0.5)
    read = _distribution(round_trips, "read").scaled(0.5)
    return [Replica(write, write, read, read) for _ in range(n)]


def prediction_json(p: Prediction) -> dict[str, Any]:
    """One setting's prediction as JSON (``kvstore predict --json``, results.json)."""
    return {
        "r": p.r,
        "w": p.w,
        "p_consistent": {str(t): round(v, 4) for t, v in p.consistent.items()},
        "k_staleness": {str(k): round(v, 4) for k, v in p.k_staleness.items()},
        "read_ms": {"p50": round(p.read_ms[0], 3), "p99": round(p.read_ms[1], 3)},
        "write_ms": {"p50": round(p.write_ms[0], 3), "p99": round(p.write_ms[1], 3)},
    }


def to_json(predictions: list[Prediction], fits: list[Prediction]) -> list[dict[str, Any]]:
    best = freshest(fits)
    return [
        {**prediction_json(p), "in_budget": p in fits, "freshest_in_budget": p is best}
        for p in predictions
    ]


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="PBS: predicted staleness and latency for every R, W")
    p.add_argument("--config", default="cluster.toml")
    p.add_argument("--t-ms", default="0,1,10,100", help="ms after a write (comma list)")
    p.add_argument("--k", default="1,2", help="versions for k-staleness (comma list)")
    p.add_argument("--budget-p99-ms", type=float, help="mark settings whose p99s fit")
    p.add_argument("--trials", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot", type=Path, help="predict from this saved snapshot")
    p.add_argument("--save", type=Path, help="save the scraped round trips here")
    p.add_argument(
        "--coordinators",
        choices=("primary", "any"),
        default="primary",
        help="who coordinates calls: the key's first primary (the ring-aware client; "
        "default) or any node (clients bound to nodes, as the harness's are)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _numbers(text: str, kind: type, name: str) -> list[Any]:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{name}: {text!r} is not a comma list of numbers") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"--{name}: give non-negative numbers")
    return sorted(set(values))


def run(args: argparse.Namespace) -> int:
    try:
        t_ms = _numbers(args.t_ms, float, "t-ms")
        ks = _numbers(args.k, int, "k")
        if args.trials < 1:
            raise ValueError("--trials must be at least 1")
        if args.snapshot is not None:
            snapshot = json.loads(args.snapshot.read_text())
            n = int(snapshot["n"])
            round_trips = snapshot["round_trips"]
            legs = snapshot.get("legs")
            local = snapshot.get("local")
            nodes = int(snapshot.get("nodes", n))
        else:
            cfg = config_mod.load(args.config)
            n = cfg.n
            round_trips, legs, local = pbs_inputs(scrape(cfg))
            nodes = len(cfg.nodes)
            if args.save is not None:
                snapshot = {
                    "n": n,
                    "nodes": nodes,
                    "round_trips": round_trips,
                    "legs": legs,
                    "local": local,
                }
                args.save.write_text(json.dumps(snapshot, indent=1))
        replicas, coordinators, assumptions = model(
            round_trips, legs, local, n=n, nodes=nodes, where=args.coordinators
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"kvstore predict: {exc}", file=sys.stderr)
        return 2
    predictions = predict_all(
        replicas, t_ms, ks, args.trials, random.Random(args.seed), coordinators
    )
    budget = args.budget_p99_ms
    fits = predictions if budget is None else within_budget(predictions, budget)
    if args.json:
        print(
            json.dumps(
                {
                    "n": n,
                    "trials": args.trials,
                    "assumptions": assumptions,
                    "budget_p99_ms": budget,
                    "settings": to_json(predictions, fits),
                }
            )
        )
        return 0
    Console().print(_table(predictions, fits, t_ms, ks, budget))
    Console().print(f"[dim]assumes {assumptions}[/dim]")
    return 0


def _table(
    predictions: list[Prediction],
    fits: list[Prediction],
    t_ms: list[float],
    ks: list[int],
    budget: float | None,
) -> Table:
    title = "PBS prediction" + (f" (budget p99 {budget:g} ms)" if budget is not None else "")
    table = Table(title=title)
    table.add_column("R")
    table.add_column("W")
    for t in t_ms:
        table.add_column(f"P(fresh) t={t:g}ms")
    for k in ks:
        table.add_column(f"{k}-stale")
    table.add_column("read p50/p99 ms")
    table.add_column("write p50/p99 ms")
    table.add_column("")
    best = freshest(fits)
    for p in predictions:
        mark = "freshest in budget" if p is best else "in budget" if p in fits else ""
        table.add_row(
            str(p.r),
            str(p.w),
            *(f"{p.consistent[t]:.4f}" for t in t_ms),
            *(f"{p.k_staleness[k]:.4f}" for k in ks),
            f"{p.read_ms[0]:.2f}/{p.read_ms[1]:.2f}",
            f"{p.write_ms[0]:.2f}/{p.write_ms[1]:.2f}",
            mark if budget is not None else "",
        )
    return table
