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
import os
import random
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvstore import config as config_mod
from kvstore.client import Client
from kvstore.cluster.local import LocalCluster, write_local_config
from kvstore.cluster.netns import NetnsNetwork, unavailable_reason
from kvstore.cluster.predict import scrape
from kvstore.core.ring import Ring
from kvstore.harness import nemesis as nemesis_mod
from kvstore.harness.control import LocalControl
from kvstore.harness.drive import RunOptions, RunState, judge, run_phases
from kvstore.harness.recorder import Recorder
from kvstore.harness.workload import make_workload
from kvstore.security.tls import client_files

__all__ = ["RunOptions", "RunState", "run_test"]


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


def cluster_config(
    folder: Path, network: NetnsNetwork | None = None, overrides: dict[str, Any] | None = None
) -> Path:
    """A 5-node SQLite cluster living inside the run folder: on free loopback ports, or
    one node per network namespace; ``overrides`` replace any [cluster] setting."""
    settings: dict[str, Any] = {
        "name": "harness",
        "n": 3,
        "engine": "sqlite",
        "run_dir": ".",
        "request_timeout_ms": 1000,
        "heartbeat_interval_ms": 100,
        "failure_detection_ms": 800,
        "hint_replay_rate": 5000,
        **(overrides or {}),
    }
    return write_local_config(
        folder,
        addresses=network.addresses if network is not None else None,
        metrics=True,  # replica round trips, for the PBS prediction beside what was seen
        **settings,
    )


async def run_test(
    options: RunOptions, on_progress: Callable[[RunState], None] | None = None
) -> dict[str, Any]:
    """Run one test; returns the results dict (also written to results.json)."""
    folder = make_run_dir(options)
    network = choose_network(options, folder)
    cfg_path = cluster_config(folder, network, options.cluster)
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
    control = LocalControl(cluster)
    recorder = Recorder(
        folder / "history.jsonl",
        extra={"consistency": options.setting.describe(cfg.n)},
    )
    faults = None
    chosen: list[nemesis_mod.Nemesis] = []
    started = time.monotonic()
    clients = contextlib.AsyncExitStack()  # every client ends here
    try:
        state.phase = "starting cluster"
        if network is not None:
            await asyncio.to_thread(network.create)
        await asyncio.to_thread(cluster.start)
        faults = nemesis_mod.FaultState(control, network)
        final_client = await clients.enter_async_context(
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
        phases = await run_phases(
            control=control,
            faults=faults,
            bound=bound,
            final_client=final_client,
            options=options,
            recorder=recorder,
            state=state,
            rng=rng,
            workload=workload,
            ring=Ring(cfg.node_ids, cfg.vnodes),
            n=cfg.n,
            on_progress=on_progress,
            chosen=chosen,
        )
        try:
            expositions = await asyncio.to_thread(scrape, cfg)
        except (OSError, ValueError) as exc:
            expositions = []
            phases.settle["metrics_scrape"] = str(exc)
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
    return judge(
        recorder=recorder,
        options=options,
        n=cfg.n,
        nodes=len(cfg.nodes),
        phases=phases,
        state=state,
        folder=folder,
        run_seconds=time.monotonic() - started,
        check_seconds=time.monotonic,
        extra={
            "partition_mechanism": "netns-iptables" if network is not None else "grpc-seam",
            "pid": os.getpid(),
        },
        expositions=expositions,
    )
