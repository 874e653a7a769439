"""Helpers shared by the benchmarks: free ports, a closed-loop driver, cluster configs.

Rules: every benchmark prints JSON with the machine it ran on, measures its baseline in
the same run, and reports medians and ratios rather than single absolute figures.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kvstore.checker.staleness import percentile
from kvstore.cluster.local import free_ports, write_local_config

__all__ = [
    "drive",
    "free_ports",
    "machine",
    "median_of",
    "pair_settings",
    "write_cluster_config",
]


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def pair_settings(args: Any, value: bytes, keys: list[bytes], **extra: Any) -> dict[str, Any]:
    """The ``settings`` of a benchmark that drives pairs of runs with ``drive``."""
    return {
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "pairs": args.pairs,
        "value_bytes": len(value),
        "keys": len(keys),
        **extra,
    }


def write_cluster_config(folder: Path, nodes: int = 5, **cluster: Any) -> Path:
    """A cluster.toml for ``nodes`` local nodes on free ports, inside ``folder``."""
    return write_local_config(folder, nodes=nodes, name="bench", **cluster)


async def drive(
    op: Callable[[int], Awaitable[Any]],
    concurrency: int,
    *,
    seconds: float | None = None,
    total: int | None = None,
) -> dict[str, float]:
    """Run ``op(i)`` from ``concurrency`` workers for ``seconds`` or ``total`` calls.

    Returns ops/s of successful calls, latency percentiles (ms) and the error count.
    """
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds if seconds is not None else float("inf")
    limit = total if total is not None else 1 << 62

    async def worker(w: int) -> None:
        nonlocal errors
        i = w
        while i < limit and time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                await op(i)
            except Exception:
                errors += 1
            else:
                latencies.append(time.perf_counter() - start)
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    nan = float("nan")
    return {
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 50) if latencies else nan,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else nan,
        "errors": errors,
        "seconds": elapsed,
    }


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}
