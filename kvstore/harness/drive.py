"""The phases of one harness run, the same in both worlds (real processes, simulator):
load and nemeses for the time limit, heal, settle, one repair round, convergence,
final reads; then the checks and the reports.

Rules:
- Time is the event loop's (``loop.time()``): real under asyncio, virtual in the
  simulator. Nothing here sleeps on anything else or starts a thread.
- A nemesis period ends at a boundary, never by cancellation (a kill cut in half would
  carry on after its heal); every nemesis is healed before the cluster is judged.
- Replicas are compared before anything repairs on the read path: the final reads (at
  all, with blocking read repair) would otherwise cover up what anti-entropy did or
  failed to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvstore.client import Client
from kvstore.cluster.predict import Metrics
from kvstore.core.ring import Ring
from kvstore.harness import nemesis as nemesis_mod
from kvstore.harness import prediction
from kvstore.harness.control import Control
from kvstore.harness.guarantees import Setting, promised
from kvstore.harness.recorder import Recorder
from kvstore.harness.workers import FINAL_PROCESS, Options, Tally, run_op, run_workers
from kvstore.harness.workload import Op, RegisterWorkload


@dataclass(slots=True)
class RunOptions:
    setting: Setting
    workload: str = "register"
    nemeses: list[str] = field(default_factory=list)
    time_limit: float = 60.0
    rate: float = 200.0
    concurrency: int = 10
    keys: int = 8
    seed: int = 0
    expect: str | None = None
    store: Path = Path("store")
    nemesis_interval: float | None = None
    op_timeout: float = 1.0
    check_time_limit: float = 30.0
    name: str | None = None
    partitions: str = "auto"  # "netns" (root: iptables), "seam" (gRPC faults) or "auto"
    # Jepsen's stagger: op i starts at a random time in ((i - 0.5) / rate, (i + 0.5) / rate)
    # instead of exactly i / rate. Fixed ticks alias with latency (a 3.8 ms write paced at
    # 10 ms is always followed 6.2 ms later, never within 5 ms); off by default so that
    # a simulated seed keeps the schedule it was measured with.
    stagger: bool = False
    # False skips the anti-entropy round before the replicas are compared: a planted bug
    # ("repair does nothing") that the convergence check must catch
    repair: bool = True
    # known bugs planted in every node for the whole run (kvstore.net.faults.PLANTED_BUGS):
    # the harness's own test, and what bench/harness.py measures the catch rate of
    plant: tuple[str, ...] = ()
    # [cluster] settings over the harness's own (tombstone_grace_s, anti_entropy_interval_s,
    # ...): validated by the config loader like any cluster.toml
    cluster: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunState:
    """What the progress display reads while the run goes on."""

    phase: str = "starting"
    tally: Tally = field(default_factory=Tally)
    nemesis: str = "healthy"


@dataclass(slots=True)
class Phases:
    """What the run phases produced, for the checks."""

    settle: dict[str, Any] = field(default_factory=dict)
    convergence: dict[str, Any] = field(default_factory=dict)
    intervals: list[tuple[float, float, str]] = field(default_factory=list)


def client_options(setting: Setting) -> Options:
    """The per-call options of the run's reads and writes."""
    options = setting.client_options()
    reads = {k: v for k, v in options.items() if k != "w"}
    writes = {k: v for k, v in options.items() if k != "r"}
    if setting.read_repair != "off":
        reads["read_repair"] = setting.read_repair
    if setting.consistency is None:
        reads["r"], writes["w"] = setting.r, setting.w
    return Options(reads, writes)


def nemesis_interval(options: RunOptions) -> float:
    return options.nemesis_interval or max(1.0, min(5.0, options.time_limit / 4))


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; True when it was set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _nemesis_loop(
    nemeses: list[nemesis_mod.Nemesis],
    recorder: Recorder,
    rng: random.Random,
    interval: float,
    state: RunState,
    intervals: list[tuple[float, float, str]],
    stop: asyncio.Event,
) -> None:
    """Alternate healthy and faulty periods of ``interval`` seconds each."""
    while not await _stopped(stop, interval):
        chosen = rng.choice(nemeses)
        began = recorder.now() / 1e9
        detail = await chosen.start()
        recorder.nemesis("start", {"nemesis": chosen.name, **detail})
        state.nemesis = f"{chosen.name} {json.dumps(detail, separators=(',', ':'))}"
        try:
            await _stopped(stop, interval)
        finally:
            healed = await chosen.heal()
            recorder.nemesis("stop", {"nemesis": chosen.name, **healed})
            intervals.append((began, recorder.now() / 1e9, chosen.name))
            state.nemesis = "healthy"


async def settle(control: Control, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until every node sees every other up and no hint is pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        problems = []
        for node in control.node_ids:
            health = await control.health(node)
            if health is None:
                problems.append(f"{node} not answering")
                continue
            problems += [f"{node} sees {p}" for p in health.peers_not_up]
            if health.hints_pending:
                problems.append(f"{node} has {health.hints_pending} hints pending")
        if not problems or loop.time() > deadline:
            return {"settled": not problems, "problems": problems[:10]}
        await asyncio.sleep(0.2)


async def repair_round(control: Control) -> dict[str, Any]:
    """One anti-entropy round from every node, as an operator would run after faults."""
    repaired, errors = 0, []
    for node in control.node_ids:
        outcome = await control.repair(node)
        repaired += outcome.keys_repaired
        errors += outcome.errors
    return {"keys_repaired": repaired, "errors": errors}


async def convergence(control: Control, ring: Ring, n: int, keys: list[str]) -> dict[str, Any]:
    """Every primary of every key holds the same version (the newest, after repair)."""
    owned: dict[str, list[str]] = {}
    for key in keys:
        for node in ring.primaries(key.encode(), n):
            owned.setdefault(node, []).append(key)
    seen: dict[str, dict[str, str]] = {key: {} for key in keys}
    for node, node_keys in owned.items():
        found = await control.versions(node, [key.encode() for key in node_keys])
        for key, version in zip(node_keys, found, strict=True):
            seen[key][node] = version
    diverged = {key: versions for key, versions in seen.items() if len(set(versions.values())) > 1}
    return {"converged": not diverged, "diverged_keys": diverged}


async def run_phases(
    *,
    control: Control,
    faults: nemesis_mod.FaultState,
    bound: list[tuple[str, Client]],
    final_client: Client,
    options: RunOptions,
    recorder: Recorder,
    state: RunState,
    rng: random.Random,
    workload: RegisterWorkload,
    ring: Ring,
    n: int,
    on_progress: Callable[[RunState], None] | None = None,
    chosen: list[nemesis_mod.Nemesis] | None = None,
) -> Phases:
    """Load, faults, heal, settle, repair, convergence, final reads. ``chosen`` (filled
    here) lets the caller heal every nemesis again if this raises."""
    phases = Phases()
    if options.plant:
        for node_faults in faults.nodes.values():
            node_faults.planted = tuple(options.plant)
        await faults.push_all()
    nemeses = nemesis_mod.build(options.nemeses, control, faults, rng)
    if chosen is not None:
        chosen[:] = nemeses
    state.phase = "running"
    recorder.restart_clock()  # time 0 is when the load starts, not the cluster
    stop_nemesis = asyncio.Event()
    nemesis_task = (
        asyncio.create_task(
            _nemesis_loop(
                nemeses,
                recorder,
                rng,
                nemesis_interval(options),
                state,
                phases.intervals,
                stop_nemesis,
            )
        )
        if nemeses
        else None
    )

    async def progress() -> None:
        while on_progress is not None:
            on_progress(state)
            await asyncio.sleep(0.25)

    progress_task = asyncio.create_task(progress())
    try:
        await run_workers(
            bound,
            workload,
            recorder,
            concurrency=options.concurrency,
            rate=options.rate,
            seconds=options.time_limit,
            options=client_options(options.setting),
            op_timeout=options.op_timeout,
            tally=state.tally,
            stagger=random.Random(f"{options.seed}:stagger") if options.stagger else None,
        )
    finally:
        stop_nemesis.set()
        if nemesis_task is not None:
            await nemesis_task
        progress_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress_task
    state.phase = "healing"
    for nem in nemeses:
        await nem.heal()
    await faults.push_all()
    recorder.nemesis("heal-all", {"nemeses": options.nemeses})
    state.nemesis = "healed"
    state.phase = "settling"
    phases.settle = await settle(control)
    phases.settle["anti_entropy"] = (
        await repair_round(control) if options.repair else {"skipped": True}
    )
    keys = workload.final_keys()
    ring = Ring(control.node_ids, ring.vnodes)  # membership changes may have replaced nodes
    phases.convergence = await convergence(control, ring, n, keys)
    for i, key in enumerate(keys):
        await run_op(
            final_client,
            Op("read", key, None),
            FINAL_PROCESS + i,
            recorder,
            Options({"r": "all", "read_repair": "blocking", "sloppy": False}, {}),
            5.0,
        )
    after_reads = await convergence(control, ring, n, keys)
    phases.convergence["after_final_reads"] = after_reads["converged"]
    if on_progress is not None:
        on_progress(state)
    return phases


def judge(
    *,
    recorder: Recorder,
    options: RunOptions,
    n: int,
    nodes: int,
    phases: Phases,
    state: RunState,
    folder: Path,
    run_seconds: float,
    check_seconds: Callable[[], float],
    extra: dict[str, Any],
    reports: bool | None = True,
    expositions: Metrics = (),
) -> dict[str, Any]:
    """The checks and the verdict; with ``reports``, every report file in ``folder``
    (None: only when the promise did not hold). ``expositions`` are the nodes' metrics
    (Prometheus text) for the PBS prediction beside the observed staleness."""
    from kvstore.harness.checks import evaluate
    from kvstore.harness.report import latency_ms, write_reports

    state.phase = "checking"
    began = check_seconds()
    history = recorder.history()  # one History: its paired operations are memoised
    results = evaluate(
        history,
        options=options,
        n=n,
        settle=phases.settle,
        convergence=phases.convergence,
        promise=options.expect or promised(options.setting, n),
        write_once=options.workload == "set",
        nemesis_intervals=phases.intervals,
    )
    stale = results.pop("_stale")
    predicted = prediction.predicted(expositions, options.setting, n, nodes, options.seed)
    observed = prediction.observed(history, stale, phases.intervals)
    latency = latency_ms(state.tally)
    results["pbs"] = {
        "predicted": predicted,
        "observed": observed,
        "right_after_a_write": prediction.compare(
            predicted, observed, latency.get("write", {}).get("p50")
        ),
    }
    results.update(
        check_seconds=round(check_seconds() - began, 3),
        folder=str(folder),
        seconds=round(run_seconds, 2),
        nemesis_intervals=phases.intervals,
        ops=dict(state.tally.outcomes),
        options={
            "setting": options.setting.describe(n),
            "workload": options.workload,
            "nemeses": options.nemeses,
            "time_limit": options.time_limit,
            "rate": options.rate,
            "concurrency": options.concurrency,
            "keys": options.keys,
            "seed": options.seed,
            "planted_bugs": list(options.plant),
            "cluster": dict(options.cluster),
            **extra,
        },
    )
    results["latency_ms"] = latency
    if reports or (reports is None and results["verdict"] != "held"):
        write_reports(folder, recorder, results, state.tally, phases.intervals)
    else:
        results.pop("_lin_result", None)
    return results
