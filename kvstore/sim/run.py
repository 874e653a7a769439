"""One simulated test per seed: the harness's phases and checks on a simulated cluster.

Rules:
- A seed decides everything: the workload, the nemesis schedule, every latency, drop
  and skew, so ``run_seed(options)`` twice gives the same history, byte for byte. The
  seed's streams are derived by name (``seed:nemesis``, ``seed:network``, ...), so
  adding a draw to one stream does not shift the others.
- The cluster is the harness's (5 nodes, N=3, the same timeouts and failure detector),
  on the memory engine behind a simulated disk; TLS is off because nothing leaves the
  process (roles are still checked: clients call as a ``write`` identity).
- The history is kept in memory; a seed that broke its promise (or ``keep``) gets a
  folder with history.jsonl, every report ``kvstore test`` writes and
  ``network.trace``; a seed that held leaves nothing unless ``keep``.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvstore import config as config_mod
from kvstore.client import Client
from kvstore.config import ClusterConfig
from kvstore.core.ring import Ring
from kvstore.harness import nemesis as nemesis_mod
from kvstore.harness.drive import Phases, RunOptions, RunState, judge, run_phases
from kvstore.harness.recorder import Recorder
from kvstore.harness.workload import make_workload
from kvstore.sim import loop as sim_loop
from kvstore.sim.client import SimClient
from kvstore.sim.cluster import SimCluster
from kvstore.sim.control import SimControl

WARMUP_S = 1.0  # virtual seconds for heartbeats to see every peer up before the load


def sim_config(**cluster: object) -> ClusterConfig:
    raw: dict[str, Any] = {
        "cluster": {
            "name": "sim",
            "n": 3,
            "engine": "memory",
            "request_timeout_ms": 1000,
            "heartbeat_interval_ms": 100,
            "failure_detection_ms": 800,
            "hint_replay_rate": 5000,
            **cluster,
        },
        "tls": "off",
        "nodes": [{"id": f"n{i}", "address": f"sim:{i}", "data_dir": f"n{i}"} for i in range(1, 6)],
    }
    return config_mod.parse(raw, base=Path("/sim"))


def stream(seed: int, name: str) -> random.Random:
    return random.Random(f"{seed}:{name}")


@dataclass(slots=True)
class SeedRun:
    seed: int
    results: dict[str, Any]
    simulated_s: float
    wall_s: float
    folder: Path | None
    steps: int


def run_seed(options: RunOptions, folder: Path, *, keep: bool = False) -> SeedRun:
    """Run ``options.seed`` on a fresh virtual loop; the history goes to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results, simulated, steps = sim_loop.run(lambda: _simulate(options, folder, keep))
    held = results["verdict"] == "held"
    kept: Path | None = folder
    if held and not keep:
        shutil.rmtree(folder, ignore_errors=True)
        kept = None
    return SeedRun(options.seed, results, simulated, time.perf_counter() - began, kept, steps)


async def _simulate(
    options: RunOptions, folder: Path, keep: bool
) -> tuple[dict[str, Any], float, int]:
    """The seed's results, its simulated seconds and the callbacks the loop ran."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, sim_loop.VirtualLoop)
    seed = options.seed
    cfg = sim_config(**options.cluster)
    cluster = SimCluster(cfg, stream(seed, "network"), trace=True)
    control = SimControl(cluster)
    started = loop.time()
    cluster.start()
    await asyncio.sleep(WARMUP_S)
    recorder = Recorder(
        None,  # in memory: written below only for a seed whose folder is kept
        extra={"consistency": options.setting.describe(cfg.n)},
        clock_ns=lambda: round(loop.time() * 1e9),
    )
    state = RunState()
    clients_rng = stream(seed, "clients")
    bound: list[tuple[str, Client]] = [
        (node, SimClient(cluster, [node], timeout=options.op_timeout, rng=clients_rng))
        for node in cluster.node_ids
    ]
    final_client = SimClient(
        cluster, list(cluster.node_ids), timeout=options.op_timeout, rng=clients_rng
    )
    faults = nemesis_mod.FaultState(control)
    try:
        phases: Phases = await run_phases(
            control=control,
            faults=faults,
            bound=bound,
            final_client=final_client,
            options=options,
            recorder=recorder,
            state=state,
            rng=stream(seed, "nemesis"),
            workload=make_workload(options.workload, options.keys, seed),
            ring=Ring(cfg.node_ids, cfg.vnodes),
            n=cfg.n,
        )
    finally:
        recorder.close()
    simulated = loop.time() - started
    results = judge(
        recorder=recorder,
        options=options,
        n=cfg.n,
        nodes=len(cfg.nodes),
        phases=phases,
        state=state,
        folder=folder,
        run_seconds=simulated,
        check_seconds=time.perf_counter,
        extra={"world": "simulated", "simulated_seconds": round(simulated, 3)},
        reports=None if not keep else True,
        expositions=cluster.expositions(),
    )
    # the machines in use at the end: a brand-new one took a removed one's place where the
    # membership nemesis made one
    results["machines"] = list(control.node_ids)
    if results["verdict"] != "held" or keep:
        recorder.write(folder / "history.jsonl")
        lines = cluster.network.trace_lines()
        (folder / "network.trace").write_text("\n".join(lines) + "\n")
    return results, simulated, loop.steps
