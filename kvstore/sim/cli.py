"""``kvstore sim``: the harness's tests on the simulated cluster, many seeds at a time.

Exit status as ``kvstore test``: 0 every seed held its promise, 1 some seed broke it,
2 bad usage, 3 a check came back unknown (and none broke). Every option shared with
``kvstore test`` means the same here; ``--time-limit`` is simulated seconds.

``--jobs`` runs seeds in that many worker processes (each seed is a world of its own);
results are taken in seed order whatever finishes first, so the output, the folders and
``--stop-after`` are the same for any number of jobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import multiprocessing
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kvstore.harness import ledger
from kvstore.harness.cli import MATRIX_CONSISTENCY, MATRIX_NEMESES, add_run_arguments, options_from
from kvstore.harness.drive import RunOptions
from kvstore.harness.runner import test_name
from kvstore.sim.run import SeedRun, run_seed
from kvstore.sim.shrink import shrink

console = Console(stderr=True)


def parse_seeds(text: str) -> list[int]:
    """``0-999``, ``3,17,40-45`` or ``417``: the seeds, in order, without repeats."""
    seeds: dict[int, None] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"--seeds: {part!r} is not N or N-M")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"--seeds: {part!r} runs backwards")
        if last - first >= 1_000_000:
            raise ValueError(f"--seeds: {part!r} is more than a million seeds")
        seeds.update(dict.fromkeys(range(first, last + 1)))
    if not seeds:
        raise ValueError("--seeds: no seed given")
    return list(seeds)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sim", help="run the harness's tests on a simulated cluster, on virtual time"
    )
    add_run_arguments(p)
    p.add_argument("--time-limit", type=float, default=10.0, help="simulated seconds of load")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", default="0-9", help="seeds to run: 0-999, 3,17,40-45")
    which.add_argument("--seed", type=int, help="one seed (replays it exactly)")
    p.add_argument("--shrink", action="store_true", help="reduce the first failing seed")
    p.add_argument(
        "--shrink-budget", type=int, default=40, metavar="RUNS", help="at most this many tries"
    )
    p.add_argument("--keep", action="store_true", help="keep the folders of seeds that held")
    p.add_argument(
        "--stop-after", type=int, default=0, metavar="K", help="stop after K failing seeds"
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=os.cpu_count() or 1,
        metavar="J",
        help="seeds run at once, in J worker processes (default: one per CPU, here "
        f"{os.cpu_count() or 1}); the output does not depend on it",
    )
    p.set_defaults(func=run)


def _jobs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs in 1..256")
    return int(text)


def _seed_folder(base: Path, seed: int) -> Path:
    return base / f"seed-{seed}"


def run(args: argparse.Namespace) -> int:
    try:
        seeds = [args.seed] if args.seed is not None else parse_seeds(args.seeds)
        if args.matrix:
            return _matrix(args, seeds)
        options = options_from(args)
    except ValueError as exc:
        print(f"kvstore sim: {exc}", file=sys.stderr)
        return 2
    base = _base(options)
    began = time.perf_counter()
    runs = _run_seeds(options, seeds, base, args)
    Console().print(_summary(options, runs, base, time.perf_counter() - began, args.jobs))
    failed = [r for r in runs if r.results["verdict"] == "violated"]
    if failed:
        first = failed[0]
        replay = command_for(dataclasses.replace(options, seed=first.seed))
        print(f"replay the first failing seed:\n  {replay}")
        if args.shrink:
            small, tries = shrink(
                dataclasses.replace(options, seed=first.seed),
                base / "shrink",
                budget=args.shrink_budget,
            )
            print(
                f"shrunk in {tries} runs to: time {small.time_limit:g} s, "
                f"{small.concurrency} processes, {small.keys} keys, "
                f"nemeses {','.join(small.nemeses) or 'none'}\n  {command_for(small)}"
            )
        return 1
    return 3 if any(r.results["verdict"] == "unknown" for r in runs) else 0


def _base(options: RunOptions) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return options.store / f"sim-{test_name(options, 3)}" / stamp


def _run_seeds(
    options: RunOptions, seeds: list[int], base: Path, args: argparse.Namespace
) -> list[SeedRun]:
    runs: list[SeedRun] = []
    failures = 0
    columns = (
        TextColumn("[bold]seeds"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("seeds", total=len(seeds), status="")
        for result in _results(options, seeds, base, args.keep, args.jobs):
            runs.append(result)
            failures += result.results["verdict"] == "violated"
            first = next((r.seed for r in runs if r.results["verdict"] == "violated"), None)
            progress.update(
                task,
                advance=1,
                status=f"violations {failures}" + (f", first at seed {first}" if first else ""),
            )
            if args.stop_after and failures >= args.stop_after:
                break
    return runs


def _results(
    options: RunOptions, seeds: list[int], base: Path, keep: bool, jobs: int
) -> Iterator[SeedRun]:
    """Each seed's run, in seed order; with ``jobs > 1`` the next seeds run meanwhile.
    Leaving the loop early (--stop-after) cancels the seeds not yet started."""
    jobs = min(jobs, len(seeds))
    if jobs <= 1:
        for seed in seeds:
            yield run_seed(
                dataclasses.replace(options, seed=seed), _seed_folder(base, seed), keep=keep
            )
        return
    # spawn, not fork: the progress display's thread may hold a lock a fork would copy
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        pending: list[Future[SeedRun]] = [
            pool.submit(
                run_seed,
                dataclasses.replace(options, seed=seed),
                _seed_folder(base, seed),
                keep=keep,
            )
            for seed in seeds
        ]
        try:
            for future in pending:
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _summary(
    options: RunOptions, runs: list[SeedRun], base: Path, elapsed_s: float, jobs: int
) -> Table:
    table = Table(title=f"simulated: {options.setting.describe(3)} under {options.nemeses}")
    table.add_column("figure")
    table.add_column("value")
    table.add_row("seeds run", str(len(runs)))
    checks: dict[str, Counter[str]] = {}
    for r in runs:
        for name, verdict in r.results["checks"].items():
            checks.setdefault(name, Counter())[str(verdict)] += 1
    for name, counts in checks.items():
        table.add_row(f"check: {name}", ", ".join(f"{v} {n}" for v, n in counts.most_common()))
    verdicts = Counter(r.results["verdict"] for r in runs)
    violated = [r.seed for r in runs if r.results["verdict"] == "violated"]
    table.add_row(
        f"promise: {runs[0].results['promise'] if runs else '-'}",
        ", ".join(f"{v} {n}" for v, n in verdicts.most_common()),
    )
    table.add_row("violating seeds", _seed_list(violated) or "none")
    if violated:
        table.add_row("first failing seed", f"{violated[0]}: {_seed_folder(base, violated[0])}")
    simulated = sum(r.simulated_s for r in runs)
    wall = sum(r.wall_s for r in runs)
    table.add_row(
        "simulated vs wall time (wall: checks and kept reports included)",
        f"{simulated:.1f} s simulated in {wall:.1f} s wall ({simulated / max(wall, 1e-9):.1f}x)",
    )
    if jobs > 1 and len(runs) > 1:
        table.add_row(
            f"elapsed, {min(jobs, len(runs))} jobs",
            f"{elapsed_s:.1f} s ({simulated / max(elapsed_s, 1e-9):.1f}x), "
            f"{60 * len(runs) / max(elapsed_s, 1e-9):.0f} seeds per minute",
        )
    return table


def _seed_list(seeds: list[int]) -> str:
    shown = ", ".join(str(s) for s in seeds[:20])
    return shown + (f" and {len(seeds) - 20} more" if len(seeds) > 20 else "")


def command_for(options: RunOptions) -> str:
    """The ``kvstore sim`` command line that replays exactly ``options`` (one seed)."""
    setting = options.setting
    parts = ["kvstore", "sim"]
    if setting.consistency is not None:
        parts += ["--consistency", setting.consistency]
    else:
        parts += ["--r", str(setting.r), "--w", str(setting.w)]
    if setting.sloppy:
        parts.append("--sloppy")
    if setting.read_repair != "off":
        parts += ["--read-repair", setting.read_repair]
    parts += ["--workload", options.workload, "--nemesis", ",".join(options.nemeses) or "none"]
    for bug in options.plant:
        parts += ["--plant", bug]
    parts += [
        "--time-limit",
        f"{options.time_limit:g}",
        "--rate",
        f"{options.rate:g}",
        "--concurrency",
        str(options.concurrency),
        "--keys",
        str(options.keys),
    ]
    if options.nemesis_interval:
        parts += ["--nemesis-interval", f"{options.nemesis_interval:g}"]
    if options.expect:
        parts += ["--expect", options.expect]
    for key, value in options.cluster.items():
        rendered = str(value).lower() if isinstance(value, bool) else str(value)
        parts += ["--cluster", f"{key}={rendered}"]
    parts += ["--store", str(options.store)]
    return shlex.join([*parts, "--seed", str(options.seed)])


def _matrix(args: argparse.Namespace, seeds: list[int]) -> int:
    table = Table(title=f"promised vs observed, simulated ({len(seeds)} seeds per cell)")
    for column in ("consistency", "nemesis", "promise", "held", "violated", "stale", "lost"):
        table.add_column(column)
    failures = 0
    rows = []
    started = time.perf_counter()
    for consistency in MATRIX_CONSISTENCY:
        for nemesis in MATRIX_NEMESES:
            options = options_from(args, consistency=consistency, nemeses=[nemesis])
            base = _base(dataclasses.replace(options, name=f"matrix-{consistency}-{nemesis}"))
            runs = _run_seeds(options, seeds, base, args)
            verdicts = Counter(r.results["verdict"] for r in runs)
            failures += verdicts["violated"]
            rows.append(ledger.row(consistency, nemesis, [r.results for r in runs]))
            table.add_row(
                consistency,
                nemesis,
                runs[0].results["promise"] if runs else "-",
                str(verdicts["held"]),
                str(verdicts["violated"]),
                str(sum(r.results["staleness"]["stale_reads"] for r in runs)),
                str(sum(r.results["staleness"]["lost_writes"] for r in runs)),
            )
    Console().print(table)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    folder = args.store / f"sim-matrix-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    title = f"kvstore sim --matrix ({len(seeds)} seeds per cell)"
    print(f"ledger: {ledger.write_ledger(folder / 'ledger.html', rows, title)}")
    console.print(f"matrix wall time {time.perf_counter() - started:.1f} s")
    return 0 if failures == 0 else 1
