"""``kvstore predict``: PBS predictions for every R and W, from the live cluster's replica
round trips or from a saved snapshot.

Rules:
- Input is each node's ``kvstore_replica_round_trip_seconds`` histogram (op write: W + A;
  op read: R + S), scraped from the ``metrics`` addresses in the config and summed over
  every coordinator and peer. Those round trips are timed on one node's clock, so no two
  clocks need to agree; splitting one in two (W and A each half a write's round trip,
  R and S half a read's) assumes symmetric links, and every replica is taken to draw from
  the same distribution. The output says so.
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
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from kvstore import config as config_mod
from kvstore.core.pbs import Distribution, Prediction, Replica, freshest, predict_all, within_budget

METRIC = "kvstore_replica_round_trip_seconds"
ASSUMPTIONS = (
    "W = A = half a write's replica round trip and R = S = half a read's (symmetric "
    "links); every replica draws from the cluster-wide distribution; no failures, read "
    "repair or hints (PBS's model)"
)


def parse_round_trips(texts: list[str]) -> dict[str, dict[str, list[float]]]:
    """Summed bucket counts per op from Prometheus expositions: {op: {bounds, counts}}."""
    cumulative: dict[str, dict[float, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name != METRIC:
                continue
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    continue
                bound = float(sample.labels["le"])
                per_op = cumulative.setdefault(sample.labels.get("op", "?"), {})
                per_op[bound] = per_op.get(bound, 0.0) + sample.value
    out: dict[str, dict[str, list[float]]] = {}
    for op, buckets in cumulative.items():
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


def replicas_from(round_trips: dict[str, dict[str, list[float]]], n: int) -> list[Replica]:
    missing = [
        op for op in ("write", "read") if sum(round_trips.get(op, {}).get("counts", [])) <= 0
    ]
    if missing:
        raise ValueError(
            f"no replica round trips measured yet for {', '.join(missing)}: run some "
            f"traffic through the cluster first (every node counts its own)"
        )

    def half(op: str) -> Distribution:
        data = round_trips[op]
        return Distribution(tuple(data["bounds"]), tuple(data["counts"])).scaled(0.5)

    write, read = half("write"), half("read")
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
        else:
            cfg = config_mod.load(args.config)
            n = cfg.n
            round_trips = parse_round_trips(scrape(cfg))
            if args.save is not None:
                args.save.write_text(json.dumps({"n": n, "round_trips": round_trips}, indent=1))
        replicas = replicas_from(round_trips, n)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"kvstore predict: {exc}", file=sys.stderr)
        return 2
    predictions = predict_all(replicas, t_ms, ks, args.trials, random.Random(args.seed))
    budget = args.budget_p99_ms
    fits = predictions if budget is None else within_budget(predictions, budget)
    if args.json:
        print(
            json.dumps(
                {
                    "n": n,
                    "trials": args.trials,
                    "assumptions": ASSUMPTIONS,
                    "budget_p99_ms": budget,
                    "settings": to_json(predictions, fits),
                }
            )
        )
        return 0
    Console().print(_table(predictions, fits, t_ms, ks, budget))
    Console().print(f"[dim]assumes {ASSUMPTIONS}[/dim]")
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
