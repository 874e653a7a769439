"""``kvstore test``: the harness from the command line, one run or a matrix.

Exit status: 0 the guarantee held, 1 it did not, 2 bad usage or an error, 3 a check
came back unknown. With ``--matrix``: 0 when every run kept its promise, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from kvstore import config as config_mod
from kvstore.harness import ledger
from kvstore.harness.guarantees import GUARANTEES, Setting
from kvstore.harness.nemesis import LINEARIZABLE_NEMESES, parse_nemeses
from kvstore.harness.runner import RunOptions, RunState, run_test
from kvstore.harness.workload import WORKLOADS
from kvstore.net.faults import PLANTED_BUGS

console = Console(stderr=True)
MATRIX_CONSISTENCY = ("one", "quorum", "all", "linearizable")
MATRIX_NEMESES = ("kill", "pause", "partition", "clock")


def _level(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def register(sub: Any) -> None:
    p = sub.add_parser("test", help="run the cluster under faults and check a guarantee")
    add_run_arguments(p)
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds of load")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--partitions",
        choices=("auto", "netns", "seam"),
        default="auto",
        help="netns: real partitions (root, iptables); seam: gRPC fault layer; auto: netns "
        "when available",
    )
    p.set_defaults(func=run)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``kvstore test`` and ``kvstore sim`` share, meaning the same in both."""
    p.add_argument("--consistency", choices=MATRIX_CONSISTENCY)
    p.add_argument("--r", type=_level, metavar="N|LEVEL")
    p.add_argument("--w", type=_level, metavar="N|LEVEL")
    p.add_argument("--sloppy", action="store_true", help="fallbacks count (default strict)")
    p.add_argument("--read-repair", choices=("off", "async", "blocking"), default="off")
    p.add_argument("--workload", default="register", help=f"one of {', '.join(WORKLOADS)}")
    p.add_argument(
        "--nemesis",
        default=None,
        help="comma list: none,kill,pause,partition,clock,delay,drop,lying-disk,hint-loss "
        f"(default: {','.join(LINEARIZABLE_NEMESES)} for --consistency linearizable, whose "
        "mix makes reads overlap partly applied writes; none otherwise)",
    )
    p.add_argument(
        "--plant",
        action="append",
        default=[],
        choices=PLANTED_BUGS,
        help="test the harness: plant a known bug in every node for the run (repeatable)",
    )
    p.add_argument("--rate", type=float, default=200.0, help="ops/s over all clients")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--keys", type=int, default=8)
    p.add_argument("--expect", choices=GUARANTEES, help="hold the run to this guarantee")
    p.add_argument("--store", type=Path, default=Path("store"), help="where run folders go")
    p.add_argument("--nemesis-interval", type=float, help="seconds per healthy/faulty period")
    p.add_argument("--check-time-limit", type=float, default=30.0)
    p.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [cluster] setting over the harness's own, e.g. tombstone_grace_s=1.5 "
        "(repeatable; checked like cluster.toml)",
    )
    p.add_argument("--matrix", action="store_true", help="every consistency x every nemesis")


def options_from(args: argparse.Namespace, **override: Any) -> RunOptions:
    """The run options the shared arguments (and any ``override``) describe."""
    if args.consistency and (args.r is not None or args.w is not None):
        raise ValueError("give either --consistency or --r/--w, not both")
    consistency = override.get("consistency", args.consistency)
    if consistency is None and args.r is None and args.w is None:
        consistency = "quorum"
    setting = Setting(
        consistency=consistency,
        r=args.r,
        w=args.w,
        sloppy=args.sloppy,
        read_repair=args.read_repair,
    )
    for name, value in (("time-limit", args.time_limit), ("rate", args.rate)):
        if value <= 0:
            raise ValueError(f"--{name} must be positive")
    if args.concurrency < 1 or args.keys < 1:
        raise ValueError("--concurrency and --keys must be at least 1")
    return RunOptions(
        setting=setting,
        workload=args.workload,
        nemeses=override.get("nemeses", parse_nemeses(_nemesis_spec(args, consistency))),
        time_limit=args.time_limit,
        rate=args.rate,
        concurrency=args.concurrency,
        keys=args.keys,
        seed=override.get("seed", getattr(args, "seed", 0)),
        expect=args.expect,
        store=args.store,
        nemesis_interval=args.nemesis_interval,
        check_time_limit=args.check_time_limit,
        partitions=getattr(args, "partitions", "auto"),
        plant=tuple(args.plant),
        cluster=cluster_overrides(args.cluster),
    )


def _value(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cluster_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` settings, checked now by the config loader (ValueError names the
    field), so a bad one stops the run before anything starts."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--cluster {pair!r}: expected KEY=VALUE")
        overrides[key.strip()] = _value(text.strip())
    if overrides:
        config_mod.parse(
            {
                "cluster": {"name": "check", "n": 3, **overrides},
                "tls": "off",
                "nodes": [
                    {"id": f"n{i}", "address": f"127.0.0.1:{i}", "data_dir": f"n{i}"}
                    for i in range(1, 6)
                ],
            },
            base=Path("/check"),
        )
    return overrides


def _nemesis_spec(args: argparse.Namespace, consistency: str | None) -> str:
    if args.nemesis is not None:
        return str(args.nemesis)
    return ",".join(LINEARIZABLE_NEMESES) if consistency == "linearizable" else "none"


def _progress_table(state: RunState) -> Table:
    t = Table.grid(padding=(0, 2))
    outcomes = state.tally.outcomes
    t.add_row(
        f"[bold]{state.phase}[/bold]",
        f"ops {state.tally.ops}",
        f"[green]ok {outcomes['ok']}[/green]",
        f"[red]fail {outcomes['fail']}[/red]",
        f"[yellow]info {outcomes['info']}[/yellow]",
        f"nemesis: {state.nemesis}",
    )
    return t


def _run_one(options: RunOptions) -> dict[str, Any]:
    with Live(
        _progress_table(RunState()), console=console, refresh_per_second=4, transient=True
    ) as live:

        def update(state: RunState) -> None:
            live.update(_progress_table(state))

        return asyncio.run(run_test(options, update))


def summary(results: dict[str, Any]) -> Table:
    table = Table(title=f"{results['options']['setting']} under {results['options']['nemeses']}")
    table.add_column("figure")
    table.add_column("value")
    ops = results["ops"]
    table.add_row("operations", ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    for name, verdict in results["checks"].items():
        table.add_row(f"check: {name}", str(verdict))
    stale = results["staleness"]
    table.add_row("stale reads", str(stale["stale_reads"]))
    table.add_row("k-staleness", str(stale["k_staleness"]))
    table.add_row("t-visibility (ms)", str(stale["t_visibility_ms"]))
    table.add_row("lost writes", str(stale["lost_writes"]))
    repair = results.get("settle", {}).get("anti_entropy", {})
    if repair.get("skipped"):
        table.add_row("anti-entropy round", "skipped")
    else:
        errors = repair.get("errors") or []
        table.add_row(
            "anti-entropy round",
            f"{repair.get('keys_repaired', 0)} keys repaired"
            + (f", {len(errors)} errors" if errors else ""),
        )
    if results.get("durability"):
        d = results["durability"]
        table.add_row(
            "acknowledged writes lost (final state)",
            f"{d['lost']} of {d['acknowledged_writes']} ({d['unchecked']} unchecked)",
        )
    for f, figures in results["latency_ms"].items():
        table.add_row(f"latency {f} (ms)", str(figures))
    for name, value in pbs_rows(results.get("pbs", {})):
        table.add_row(name, value)
    colour = {"held": "green", "violated": "red"}.get(results["verdict"], "yellow")
    table.add_row(
        f"[bold]promise: {results['promise']}[/bold]",
        f"[bold {colour}]{results['verdict']}[/bold {colour}]"
        + (f" ({'; '.join(results['reasons'])})" if results["reasons"] else ""),
    )
    table.add_row("partition mechanism", results["options"]["partition_mechanism"])
    table.add_row("run folder", results["folder"])
    return table


def run(args: argparse.Namespace) -> int:
    try:
        if args.matrix:
            return _matrix(args)
        options = options_from(args)
        results = _run_one(options)
    except ValueError as exc:
        print(f"kvstore test: {exc}", file=sys.stderr)
        return 2
    Console().print(summary(results))
    return int(results["exit_code"])


def _matrix(args: argparse.Namespace) -> int:
    table = Table(title="promised vs observed")
    for column in ("consistency", "nemesis", "promise", "verdict", "linearizable", "stale", "lost"):
        table.add_column(column)
    failures = 0
    rows = []
    for consistency in MATRIX_CONSISTENCY:
        for nemesis in MATRIX_NEMESES:
            options = options_from(args, consistency=consistency, nemeses=[nemesis])
            results = _run_one(options)
            rows.append(ledger.row(consistency, nemesis, [results]))
            failures += results["verdict"] != "held"
            table.add_row(
                consistency,
                nemesis,
                results["promise"],
                results["verdict"],
                results["checks"]["linearizable"],
                str(results["staleness"]["stale_reads"]),
                str(results["staleness"]["lost_writes"]),
            )
    Console().print(table)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    folder = args.store / f"matrix-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    page = ledger.write_ledger(folder / "ledger.html", rows, "kvstore test --matrix")
    Console().print(f"ledger: {page}")
    return 0 if failures == 0 else 1


def pbs_rows(pbs: dict[str, Any]) -> list[tuple[str, str]]:
    """PBS's prediction beside what the run's reads saw, healthy and fault periods apart."""
    predicted, observed = pbs.get("predicted", {}), pbs.get("observed", {})
    if not predicted:
        return []
    if not predicted.get("available"):
        return [("stale reads: PBS", f"no prediction ({predicted.get('why', '?')})")]

    def rate(period: dict[str, Any]) -> str:
        if not period.get("reads"):
            return "no reads"
        return f"{period['stale_read_rate']:.4f} ({period['stale_reads']} of {period['reads']})"

    rows = [
        ("stale reads: PBS at t=0", f"{predicted['p_stale_read']:.4f}"),
        ("stale reads: seen, healthy", rate(observed.get("healthy", {}))),
        ("stale reads: seen, faults", rate(observed.get("faults", {}))),
        ("t-visibility: PBS (ms, 99.9%)", str(predicted.get("t_visibility_ms_p999"))),
    ]
    after = pbs.get("right_after_a_write", {})
    if after.get("available"):
        rows.append(
            (
                "right after a write: PBS vs seen",
                f"{after['predicted_stale_read_rate']:.4f} vs "
                f"{after['observed_stale_read_rate']:.4f} over {after['reads']} reads",
            )
        )
    return rows
