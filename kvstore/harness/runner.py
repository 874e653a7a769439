"""One harness run: cluster up, clients and nemeses for the time limit, heal, settle,
final reads, cluster down, checks, report.

Rules:
- The run owns a fresh folder ``<store>/<test>/<timestamp>/`` (``latest`` links to it):
  its cluster config, node data and logs, the history and every report live there.
- Whatever fails, every nemesis is healed and every node process is stopped (by PID).
- The verdict is about the promise: exit 0 when the guarantee held, 1 when it did not,
  3 when a check came back unknown (2, errors, is the CLI's).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from kvstore import config as config_mod
from kvstore.client import Client
from kvstore.cluster.local import LocalCluster, write_local_config
from kvstore.cluster.netns import NetnsNetwork, unavailable_reason
from kvstore.core.ring import Ring
from kvstore.harness import nemesis as nemesis_mod
from kvstore.harness.guarantees import Setting, promised
from kvstore.harness.recorder import Recorder
from kvstore.harness.workers import FINAL_PROCESS, Options, Tally, run_op, run_workers
from kvstore.harness.workload import Op, make_workload
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.security.tls import client_files


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
    # False skips the anti-entropy round before the replicas are compared: a planted bug
    # ("repair does nothing") that the convergence check must catch
    repair: bool = True
    # known bugs planted in every node for the whole run (kvstore.net.faults.PLANTED_BUGS):
    # the harness's own test, and what bench/harness.py measures the catch rate of
    plant: tuple[str, ...] = ()


@dataclass(slots=True)
class RunState:
    """What the progress display reads while the run goes on."""

    phase: str = "starting"
    tally: Tally = field(default_factory=Tally)
    nemesis: str = "healthy"


def test_name(options: RunOptions, n: int) -> str:
    if options.name:
        return options.name
    label = options.setting.describe(n).split(" ")[0].replace(",", "-").replace("=", "")
    faults = "+".join(options.nemeses) or "none"
    return f"{options.workload}-{label}-{faults}"


def make_run_dir(options: RunOptions) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S.%f")[:-3]
    folder = options.store / test_name(options, 3) / stamp
    folder.mkdir(parents=True)
    latest = folder.parent / "latest"
    with contextlib.suppress(OSError):
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(folder.name)
    return folder


def choose_network(options: RunOptions, folder: Path) -> NetnsNetwork | None:
    """Real partitions when asked for or, with ``auto``, when this machine allows them."""
    if options.partitions == "seam" or "partition" not in options.nemeses:
        return None
    reason = unavailable_reason()
    if reason is not None:
        if options.partitions == "netns":
            raise ValueError(f"--partitions netns: {reason}")
        return None
    tag = format(zlib.crc32(str(folder).encode()) % 36**4, "x")[:5]
    return NetnsNetwork(tag, [f"n{i}" for i in range(1, 6)])


def cluster_config(folder: Path, network: NetnsNetwork | None = None) -> Path:
    """A 5-node SQLite cluster living inside the run folder: on free loopback ports, or
    one node per network namespace."""
    return write_local_config(
        folder,
        addresses=network.addresses if network is not None else None,
        name="harness",
        n=3,
        engine="sqlite",
        run_dir=".",
        request_timeout_ms=1000,
        heartbeat_interval_ms=100,
        failure_detection_ms=800,
        hint_replay_rate=5000,
    )


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
    """Alternate healthy and faulty periods of ``interval`` seconds each.

    It stops at a period boundary when ``stop`` is set (never by cancellation, which
    could cut a fault in half: a kill's thread would carry on after its heal).
    """
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


async def _settle(cluster: LocalCluster, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until every node sees every other up and no hint is pending."""
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        for node in cluster.config.node_ids:
            try:
                reply = await asyncio.to_thread(cluster.status, node)
            except grpc.RpcError:
                problems.append(f"{node} not answering")
                continue
            problems += [f"{node} sees {p.node} {p.state}" for p in reply.peers if p.state != "up"]
            pending = sum(reply.hints_pending.values())
            if pending:
                problems.append(f"{node} has {pending} hints pending")
        if not problems or time.monotonic() > deadline:
            return {"settled": not problems, "problems": problems[:10]}
        await asyncio.sleep(0.2)


async def _repair_round(cluster: LocalCluster) -> dict[str, Any]:
    """One anti-entropy round from every node, as an operator would run after faults."""
    repaired, errors = 0, []
    for node in cluster.config.node_ids:
        channel = cluster.aio_channel(node)
        try:
            reply = await pb_grpc.AdminStub(channel).Repair(
                pb.RepairRequest(), timeout=60, wait_for_ready=True
            )
            repaired += reply.keys_repaired
            errors += [f"{node}->{p.peer}: {p.error}" for p in reply.peers if p.error]
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{node}: {exc.code().name}")
        finally:
            await channel.close(None)
    return {"keys_repaired": repaired, "errors": errors}


async def _convergence(cluster: LocalCluster, keys: list[str]) -> dict[str, Any]:
    """Every primary of every key holds the same version (the newest, after repair)."""
    cfg = cluster.config
    ring = Ring(cfg.node_ids, cfg.vnodes)
    channels = {n: cluster.aio_channel(n) for n in cfg.node_ids}
    diverged: dict[str, dict[str, str]] = {}
    try:
        for key in keys:
            versions: dict[str, str] = {}
            for node in ring.primaries(key.encode(), cfg.n):
                try:
                    # wait_for_ready: a node restarted moments ago may still be in
                    # its channel's reconnect backoff
                    reply = await pb_grpc.AdminStub(channels[node]).ReadLocal(
                        pb.LocalReadRequest(key=key.encode()), timeout=5, wait_for_ready=True
                    )
                except grpc.aio.AioRpcError as exc:
                    versions[node] = f"unreachable: {exc.code().name}"
                    continue
                v = reply.version
                versions[node] = (
                    f"{v.ts.wall}.{v.ts.logical}@{v.ts.node}"
                    + (" tombstone" if v.tombstone else "")
                    if v.found
                    else "absent"
                )
            if len(set(versions.values())) > 1:
                diverged[key] = versions
    finally:
        for channel in channels.values():
            await channel.close(None)
    return {"converged": not diverged, "diverged_keys": diverged}


async def run_test(
    options: RunOptions, on_progress: Callable[[RunState], None] | None = None
) -> dict[str, Any]:
    """Run one test; returns the results dict (also written to results.json)."""
    folder = make_run_dir(options)
    network = choose_network(options, folder)
    cfg_path = cluster_config(folder, network)
    cfg = config_mod.load(cfg_path)
    rng = random.Random(options.seed)
    workload = make_workload(options.workload, options.keys, options.seed)
    state = RunState()
    cluster = LocalCluster(
        cfg,
        cfg_path,
        run_dir=folder,
        command_prefix=network.command if network else None,
        enable_faults=True,
    )
    recorder = Recorder(
        folder / "history.jsonl",
        extra={"consistency": options.setting.describe(cfg.n)},
    )
    intervals: list[tuple[float, float, str]] = []
    faults = None
    chosen: list[nemesis_mod.Nemesis] = []
    started = time.monotonic()
    clients = contextlib.AsyncExitStack()  # every client and the progress task end here
    try:
        state.phase = "starting cluster"
        if network is not None:
            await asyncio.to_thread(network.create)
        await asyncio.to_thread(cluster.start)
        faults = nemesis_mod.FaultState(cluster, network)
        if options.plant:
            for node_faults in faults.nodes.values():
                node_faults.planted = tuple(options.plant)
            await faults.push_all()
        chosen = nemesis_mod.build(options.nemeses, cluster, faults, rng)
        interval = options.nemesis_interval or max(1.0, min(5.0, options.time_limit / 4))
        client = await clients.enter_async_context(
            Client.from_config(cfg, timeout=options.op_timeout)
        )
        bound = [
            (
                node.id,
                await clients.enter_async_context(
                    Client(
                        [node.address],
                        n=cfg.n,
                        timeout=options.op_timeout,
                        tls=client_files(cfg),
                    )
                ),
            )
            for node in cfg.nodes
        ]
        client_options = options.setting.client_options()
        reads = {k: v for k, v in client_options.items() if k != "w"}
        writes = {k: v for k, v in client_options.items() if k != "r"}
        if options.setting.read_repair != "off":
            reads["read_repair"] = options.setting.read_repair
        if options.setting.consistency is None:
            reads["r"], writes["w"] = options.setting.r, options.setting.w

        state.phase = "running"
        recorder.restart_clock()  # time 0 is when the load starts, not the cluster
        stop_nemesis = asyncio.Event()
        nemesis_task = (
            asyncio.create_task(
                _nemesis_loop(chosen, recorder, rng, interval, state, intervals, stop_nemesis)
            )
            if chosen
            else None
        )

        async def progress() -> None:
            while on_progress is not None:
                on_progress(state)
                await asyncio.sleep(0.25)

        progress_task = asyncio.create_task(progress())
        clients.callback(progress_task.cancel)
        try:
            await run_workers(
                bound,
                workload,
                recorder,
                concurrency=options.concurrency,
                rate=options.rate,
                seconds=options.time_limit,
                options=Options(reads, writes),
                op_timeout=options.op_timeout,
                tally=state.tally,
            )
        finally:
            stop_nemesis.set()
            if nemesis_task is not None:
                await nemesis_task
        state.phase = "healing"
        for nem in chosen:
            await nem.heal()
        await faults.push_all()
        recorder.nemesis("heal-all", {"nemeses": options.nemeses})
        state.nemesis = "healed"
        state.phase = "settling"
        settle = await _settle(cluster)
        settle["anti_entropy"] = (
            await _repair_round(cluster) if options.repair else {"skipped": True}
        )
        # Replicas are compared before anything repairs on the read path: the final reads
        # (at all, with blocking read repair) would otherwise cover up what anti-entropy
        # did or failed to do.
        convergence = await _convergence(cluster, workload.final_keys())
        for i, key in enumerate(workload.final_keys()):
            await run_op(
                client,
                Op("read", key, None),
                FINAL_PROCESS + i,
                recorder,
                Options({"r": "all", "read_repair": "blocking", "sloppy": False}, {}),
                5.0,
            )
        after_reads = await _convergence(cluster, workload.final_keys())
        convergence["after_final_reads"] = after_reads["converged"]
        if on_progress is not None:
            on_progress(state)
    finally:
        await clients.aclose()
        if faults is not None:
            for nem in chosen:
                with contextlib.suppress(Exception):
                    await nem.heal()
        await asyncio.to_thread(cluster.stop)
        if network is not None:
            await asyncio.to_thread(network.teardown)
        recorder.close()
    state.phase = "checking"
    run_seconds = time.monotonic() - started
    from kvstore.harness.checks import evaluate
    from kvstore.harness.report import write_reports

    check_started = time.monotonic()
    results = evaluate(
        recorder.history(),
        options=options,
        n=cfg.n,
        settle=settle,
        convergence=convergence,
        promise=options.expect or promised(options.setting, cfg.n),
        write_once=options.workload == "set",
        nemesis_intervals=intervals,
    )
    results.update(
        check_seconds=round(time.monotonic() - check_started, 3),
        folder=str(folder),
        seconds=round(run_seconds, 2),
        nemesis_intervals=intervals,
        ops=dict(state.tally.outcomes),
        options={
            "setting": options.setting.describe(cfg.n),
            "workload": options.workload,
            "nemeses": options.nemeses,
            "time_limit": options.time_limit,
            "rate": options.rate,
            "concurrency": options.concurrency,
            "keys": options.keys,
            "seed": options.seed,
            "planted_bugs": list(options.plant),
            "partition_mechanism": "netns-iptables" if network is not None else "grpc-seam",
            "pid": os.getpid(),
        },
    )
    write_reports(folder, recorder, results, state.tally, intervals)
    return results
