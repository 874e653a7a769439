"""The simulator's speed, and how fast it finds bugs beside real-time ``kvstore test``.

Usage: python bench/sim.py [--json] [--seeds 40] [--real-runs 4] [--seconds 8]

In one run on one machine:
1. speed: a 5-node, 10-client, 200 ops/s simulated run (quorum, no faults, and with
   partition,kill,pause,clock,drop) of ``--sim-seconds``: simulated seconds per wall
   second, with and without the checks.
2. bug finding: quorum held to linearizable under partition,kill, the setting of the
   real-time catch rate in bench/harness.py: ``--seeds`` simulated seeds and
   ``--real-runs`` real runs of ``--seconds`` each, interleaved (sim seeds first, then
   one real run, ...): violations per wall minute both ways, and the wall time to the
   first violation; simulated seeds per wall minute.
3. jobs: ``--seeds`` seeds of the hunt's setting through ``kvstore sim``'s seed runner
   with one job and with one per CPU (the same seeds, results in seed order both ways):
   seeds per wall minute and simulated seconds per wall second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine  # noqa: E402
from kvstore.harness.drive import RunOptions  # noqa: E402
from kvstore.harness.guarantees import Setting  # noqa: E402
from kvstore.harness.runner import run_test  # noqa: E402
from kvstore.sim.cli import _results  # noqa: E402
from kvstore.sim.run import run_seed  # noqa: E402

QUORUM = Setting("quorum", None, None, False, "off")
FAULTS = ["partition", "kill", "pause", "clock", "drop"]


def _options(store: Path, seed: int, seconds: float, nemeses: list[str], **kw: Any) -> RunOptions:
    return RunOptions(
        setting=QUORUM,
        nemeses=nemeses,
        time_limit=seconds,
        rate=200,
        concurrency=10,
        store=store,
        seed=seed,
        **kw,
    )


def speed(sim_seconds: float, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"sim_seconds": sim_seconds, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="kvsim-") as tmp:
        for label, nemeses in (("healthy", []), ("faults", FAULTS)):
            ratios, ratios_sim_only = [], []
            for seed in range(rounds):
                run = run_seed(
                    _options(Path(tmp), seed, sim_seconds, nemeses),
                    Path(tmp) / f"{label}-{seed}",
                )
                check_s = run.results["check_seconds"]
                ratios.append(run.simulated_s / run.wall_s)
                ratios_sim_only.append(run.simulated_s / max(run.wall_s - check_s, 1e-9))
            out[label] = {
                "simulated_per_wall_second": round(statistics.median(ratios), 1),
                "without_checks": round(statistics.median(ratios_sim_only), 1),
            }
    return out


def hunt(seeds: int, real_runs: int, seconds: float) -> dict[str, Any]:
    """Violations of quorum-as-linearizable per wall minute, simulated and real."""
    sim: dict[str, Any] = {"runs": 0, "violations": 0, "wall_s": 0.0}
    real: dict[str, Any] = {"runs": 0, "violations": 0, "wall_s": 0.0}
    sim["first_violation_wall_s"] = real["first_violation_wall_s"] = None
    per_real = max(1, seeds // max(real_runs, 1))
    nemeses = ["partition", "kill"]
    with tempfile.TemporaryDirectory(prefix="kvsim-") as tmp:
        seed = 0
        while sim["runs"] < seeds or real["runs"] < real_runs:
            for _ in range(per_real):
                if sim["runs"] >= seeds:
                    break
                began = time.perf_counter()
                run = run_seed(
                    _options(Path(tmp), seed, seconds, nemeses, expect="linearizable"),
                    Path(tmp) / f"sim-{seed}",
                )
                sim["wall_s"] += time.perf_counter() - began
                sim["runs"] += 1
                seed += 1
                if run.results["verdict"] == "violated":
                    sim["violations"] += 1
                    if sim["first_violation_wall_s"] is None:
                        sim["first_violation_wall_s"] = round(sim["wall_s"], 1)
            if real["runs"] < real_runs:
                began = time.perf_counter()
                results = asyncio.run(
                    run_test(
                        _options(
                            Path(tmp), real["runs"] + 1, seconds, nemeses, expect="linearizable"
                        )
                    )
                )
                real["wall_s"] += time.perf_counter() - began
                real["runs"] += 1
                if results["verdict"] == "violated":
                    real["violations"] += 1
                    if real["first_violation_wall_s"] is None:
                        real["first_violation_wall_s"] = round(real["wall_s"], 1)
    for side in (sim, real):
        side["runs_per_wall_minute"] = round(side["runs"] / max(side["wall_s"], 1e-9) * 60, 1)
        side["violations_per_wall_minute"] = round(
            side["violations"] / max(side["wall_s"], 1e-9) * 60, 2
        )
        side["wall_s"] = round(side["wall_s"], 1)
    ratio = (
        round(sim["violations_per_wall_minute"] / real["violations_per_wall_minute"], 1)
        if real["violations_per_wall_minute"]
        else None
    )
    return {
        "setting": "quorum --expect linearizable, partition,kill, 200 ops/s, 10 clients",
        "seconds_per_run": seconds,
        "simulated": sim,
        "real": real,
        "ratio_violations_per_minute": ratio,
    }


def jobs(seeds: int, seconds: float) -> dict[str, Any]:
    """The seed runner with one job, then with one per CPU, on the same seeds."""
    out: dict[str, Any] = {"seeds": seeds, "seconds_per_run": seconds}
    options = _options(Path("."), 0, seconds, ["partition", "kill"], expect="linearizable")
    verdicts = {}
    for count in sorted({1, os.cpu_count() or 1}):
        with tempfile.TemporaryDirectory(prefix="kvsim-") as tmp:
            began = time.perf_counter()
            runs = list(_results(options, list(range(seeds)), Path(tmp), False, count))
            wall = time.perf_counter() - began
        verdicts[count] = [r.results["verdict"] for r in runs]
        out[f"jobs_{count}"] = {
            "wall_s": round(wall, 1),
            "seeds_per_wall_minute": round(60 * seeds / wall, 1),
            "simulated_per_wall_second": round(sum(r.simulated_s for r in runs) / wall, 1),
        }
    out["same_verdicts"] = len({tuple(v) for v in verdicts.values()}) == 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sim-seconds", type=float, default=30.0)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--real-runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", choices=("speed", "hunt", "jobs"))
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine()}
    began = time.perf_counter()
    if args.only in (None, "speed"):
        report["speed"] = speed(args.sim_seconds, args.speed_rounds)
    if args.only in (None, "hunt"):
        report["hunt"] = hunt(args.seeds, args.real_runs, args.seconds)
    if args.only in (None, "jobs"):
        report["jobs"] = jobs(args.seeds, args.seconds)
    report["bench_wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
