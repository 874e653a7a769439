"""PBS beside what real runs saw: R = W = 1 on a healthy 5-node cluster.

Usage: python bench/pbs.py [--json] [--runs 8] [--seconds 16] [--rate 200]

Each run is a real ``kvstore test --consistency one`` with no nemesis; the figure is
``results.json``'s ``pbs.right_after_a_write``: PBS's stale-read rate for the reads that
began 0-5 ms after their key's write was acknowledged (each at its own delay, plus the
client's two hops), beside the rate those reads saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine  # noqa: E402
from kvstore.harness.drive import RunOptions  # noqa: E402
from kvstore.harness.guarantees import Setting  # noqa: E402
from kvstore.harness.runner import run_test  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kvpbs-") as tmp:
        for seed in range(1, args.runs + 1):
            options = RunOptions(
                Setting("one", None, None, False, "off"),
                nemeses=[],
                time_limit=args.seconds,
                rate=args.rate,
                store=Path(tmp),
                seed=seed,
            )
            pbs = asyncio.run(run_test(options))["pbs"]
            runs.append({"seed": seed, **pbs["right_after_a_write"]})
    gaps = [abs(r["predicted_stale_read_rate"] - r["observed_stale_read_rate"]) for r in runs]
    report = {
        "benchmark": "pbs",
        "machine": machine(),
        "setting": f"one, healthy, {args.rate:g} ops/s, {args.seconds:g} s per run",
        "runs": runs,
        "within": sum(r["within_2x_or_0.05"] for r in runs),
        "largest_gap": round(max(gaps), 4),
        "median_predicted": statistics.median(r["predicted_stale_read_rate"] for r in runs),
        "median_observed": statistics.median(r["observed_stale_read_rate"] for r in runs),
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
