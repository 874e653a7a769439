"""What recording costs, and how long checking a run takes.

Usage: python bench/harness.py [--json] [--seconds 5] [--history-seconds 60]

In one run on one machine: (1) the bare client loop, quorum reads and writes from 10
closed-loop workers with no recording, against a 5-node cluster; (2) the same load
through the harness's workers, which record every invoke and completion to
history.jsonl; their ops/s and the ratio. (3) A default ``kvstore test`` run
(quorum, partition nemesis, 200 ops/s) of ``--history-seconds`` and the time its checks
(linearizability + staleness) take. Also: how often quorum reads held to linearizable
are caught over ``--seeds`` short runs, and (4) how many planted bugs of the linearizable
level the harness catches per wall minute with the old default nemesis (partition,kill)
and with the new default mix, interleaved seed by seed in the same run
(``--planted-seeds``; ``--only planted`` runs just that part).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import drive, machine, median_of, write_cluster_config  # noqa: E402
from kvstore import Client  # noqa: E402
from kvstore import config as config_mod  # noqa: E402
from kvstore.cluster.local import LocalCluster  # noqa: E402
from kvstore.harness.guarantees import Setting  # noqa: E402
from kvstore.harness.nemesis import LINEARIZABLE_NEMESES  # noqa: E402
from kvstore.harness.recorder import Recorder  # noqa: E402
from kvstore.harness.runner import RunOptions, run_test  # noqa: E402
from kvstore.harness.workers import Options, Tally, run_workers  # noqa: E402
from kvstore.harness.workload import RegisterWorkload  # noqa: E402
from kvstore.net.faults import PLANTED_BUGS  # noqa: E402
from kvstore.security.tls import client_files  # noqa: E402

CONCURRENCY = 10


async def recording_cost(seconds: float, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kvharness-") as tmp:
        path = write_cluster_config(Path(tmp), n=3, engine="sqlite")
        cfg = config_mod.load(path)
        with LocalCluster(cfg, path) as cluster:
            cluster.start()
            bare_rounds, recorded_rounds = [], []
            tls = client_files(cfg)
            bound = [(n.id, Client([n.address], n=cfg.n, tls=tls)) for n in cfg.nodes]
            rng = random.Random(1)
            keys = [f"r{i}" for i in range(8)]

            async def bare(i: int) -> None:
                client = bound[i % len(bound)][1]
                key = rng.choice(keys)
                if rng.random() < 0.5:
                    await client.get(key, r="quorum", sloppy=False, timeout=1.0)
                else:
                    await client.put(key, str(i), w="quorum", sloppy=False, timeout=1.0)

            for r in range(rounds):
                bare_rounds.append(await drive(bare, CONCURRENCY, seconds=seconds))
                recorder = Recorder(Path(tmp) / f"history-{r}.jsonl")
                recorder.restart_clock()
                tally = Tally()
                began = time.perf_counter()
                await run_workers(
                    bound,
                    RegisterWorkload(8, seed=r),
                    recorder,
                    concurrency=CONCURRENCY,
                    rate=1e9,
                    seconds=seconds,
                    options=Options(
                        {"r": "quorum", "sloppy": False}, {"w": "quorum", "sloppy": False}
                    ),
                    op_timeout=1.0,
                    tally=tally,
                )
                elapsed = time.perf_counter() - began
                recorder.close()
                recorded_rounds.append(
                    {
                        "ops_per_s": tally.outcomes["ok"] / elapsed,
                        "errors": tally.ops - tally.outcomes["ok"],
                    }
                )
            for _, client in bound:
                await client.close()
    bare_m = median_of([{k: r[k] for k in ("ops_per_s", "errors")} for r in bare_rounds])
    rec_m = median_of(recorded_rounds)
    return {
        "bare_client_ops_per_s": bare_m["ops_per_s"],
        "harness_recording_ops_per_s": rec_m["ops_per_s"],
        "ratio_recording_to_bare": round(rec_m["ops_per_s"] / bare_m["ops_per_s"], 3),
    }


def check_time(history_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kvharness-") as tmp:
        options = RunOptions(
            setting=Setting("quorum", None, None, False, "off"),
            nemeses=["partition"],
            time_limit=history_seconds,
            store=Path(tmp),
            seed=1,
        )
        results = asyncio.run(run_test(options))
    return {
        "history_seconds": history_seconds,
        "operations": sum(results["ops"].values()),
        "check_seconds": results["check_seconds"],
        "linearizability_verdict": results["checks"]["linearizable"],
    }


def catch_rate(seeds: int) -> dict[str, Any]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kvharness-") as tmp:
        for seed in range(1, seeds + 1):
            options = RunOptions(
                setting=Setting("quorum", None, None, False, "off"),
                nemeses=["partition", "kill"],
                time_limit=8,
                rate=150,
                concurrency=8,
                keys=4,
                store=Path(tmp),
                nemesis_interval=1.5,
                op_timeout=0.5,
                seed=seed,
                expect="linearizable",
            )
            outcomes.append(asyncio.run(run_test(options))["checks"]["linearizable"])
    caught = sum(o == "not linearizable" for o in outcomes)
    return {
        "seeds": seeds,
        "caught": caught,
        "rate": round(caught / seeds, 3),
        "per_seed": outcomes,
    }


def planted_catch_rate(seeds: int, seconds: float) -> dict[str, Any]:
    """Planted ABD bugs caught per wall minute, old default nemesis vs the new mix."""
    mixes = {
        "partition,kill": ["partition", "kill"],
        "default mix": list(LINEARIZABLE_NEMESES),
        # drop is what exposes a skipped write-back in the simulator: does it in real time?
        "mix + drop": [*LINEARIZABLE_NEMESES, "drop"],
    }
    tally: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kvharness-") as tmp:
        for seed in range(1, seeds + 1):
            for bug in PLANTED_BUGS:
                for label, nemeses in mixes.items():
                    began = time.perf_counter()
                    options = RunOptions(
                        setting=Setting("linearizable", None, None, False, "off"),
                        nemeses=nemeses,
                        time_limit=seconds,
                        rate=150,
                        concurrency=8,
                        keys=3,
                        store=Path(tmp),
                        nemesis_interval=1.5,
                        op_timeout=0.5,
                        seed=seed,
                        plant=(bug,),
                    )
                    verdict = asyncio.run(run_test(options))["verdict"]
                    row = tally.setdefault(
                        f"{bug} / {label}", {"runs": 0, "caught": 0, "wall_s": 0.0}
                    )
                    row["runs"] += 1
                    row["caught"] += verdict == "violated"
                    row["wall_s"] += time.perf_counter() - began
    for row in tally.values():
        row["wall_s"] = round(row["wall_s"], 1)
        row["caught_per_wall_minute"] = round(row["caught"] / (row["wall_s"] / 60), 2)
    return {"seeds": seeds, "seconds_per_run": seconds, "results": tally}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history-seconds", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--planted-seeds", type=int, default=4)
    parser.add_argument("--planted-seconds", type=float, default=8.0)
    parser.add_argument("--only", choices=("planted",), help="run only this part")
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "harness", "machine": machine()}
    if args.only is None:
        report["recording"] = uvloop.run(recording_cost(args.seconds, args.rounds))
        report["checking"] = check_time(args.history_seconds)
        report["quorum_caught_as_not_linearizable"] = catch_rate(args.seeds) if args.seeds else None
    report["planted_bugs_caught"] = planted_catch_rate(args.planted_seeds, args.planted_seconds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for section, figures in report.items():
            print(f"{section}: {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
