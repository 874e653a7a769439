"""Shrinking a failing seed: the smallest run, by a few measures, that still fails.

Rules: a candidate is the current run made smaller in one way (half the time, half the
processes, half the keys, one nemesis fewer); it is kept when the same seed still breaks
the promise. Each try is a full deterministic run, so the result replays with the
command printed. The nemesis period is pinned to the original's first, so halving the
time does not also change how long each fault lasts. At most ``budget`` runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from kvstore.harness.drive import RunOptions, nemesis_interval
from kvstore.sim.run import run_seed


def smaller(options: RunOptions) -> Iterator[RunOptions]:
    """Each way to make ``options`` one step smaller, biggest savings first."""
    if options.time_limit >= 2:
        yield dataclasses.replace(options, time_limit=round(options.time_limit / 2, 3))
    if options.concurrency > 1:
        yield dataclasses.replace(options, concurrency=options.concurrency // 2)
    if options.keys > 1:
        yield dataclasses.replace(options, keys=options.keys // 2)
    if len(options.nemeses) > 1:
        for name in options.nemeses:
            yield dataclasses.replace(options, nemeses=[n for n in options.nemeses if n != name])


def shrink(options: RunOptions, folder: Path, *, budget: int = 40) -> tuple[RunOptions, int]:
    """The smallest failing variant of ``options`` found in ``budget`` runs, and the
    number of runs it took. The final one's folder is kept (``folder/final``)."""
    current = dataclasses.replace(options, nemesis_interval=nemesis_interval(options))
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for candidate in smaller(current):
            if tries >= budget:
                break
            tries += 1
            run = run_seed(candidate, folder / f"try-{tries}")
            if run.results["verdict"] == "violated":
                current = candidate
                improved = True
                break
    run_seed(current, folder / "final", keep=True)
    return current, tries
