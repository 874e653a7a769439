"""The run folder a person reads: results, histories in two formats, pictures.

Files: ``results.json`` (every figure and verdict), ``history.jsonl`` (written live by
the recorder), ``history.edn`` (Jepsen-compatible), ``linearizability.html`` (the
checker's report), ``latency.png``, ``throughput.png`` and ``timeline.png`` with the
nemesis periods shaded, and ``logs/`` with each node's log (written by the nodes).
Rule: plots are drawn headless (Agg) and never block or fail the run; a plotting error
is recorded in results.json instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvstore.checker import Event, Operation, dump_edn, write_html
from kvstore.checker.staleness import percentile
from kvstore.harness.recorder import Recorder
from kvstore.harness.workers import Tally

COLOURS = {"ok": "#2a9d4b", "fail": "#d1495b", "info": "#edae49"}


def percentiles(values: list[float]) -> dict[str, float]:
    """Latency percentiles in ms, nearest-rank like every other figure the checker gives."""
    if not values:
        return {}
    return {
        name: round(1000 * percentile(values, q), 3)
        for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
    }


def latency_ms(tally: Tally) -> dict[str, dict[str, float]]:
    """Percentiles of the successful calls' latencies, per operation."""
    by_f: dict[str, list[float]] = {}
    for _, latency, f, outcome in tally.latencies:
        if outcome == "ok":
            by_f.setdefault(f, []).append(latency)
    return {f: percentiles(v) for f, v in sorted(by_f.items())}


def write_reports(
    folder: Path,
    recorder: Recorder,
    results: dict[str, Any],
    tally: Tally,
    intervals: list[tuple[float, float, str]],
) -> None:
    lin = results.pop("_lin_result", None)
    with open(folder / "history.edn", "w", encoding="utf-8") as fp:
        # Jepsen's convention for many registers: :value [k v], split per key by its
        # independent checker (and by ours)
        dump_edn(recorder.events, fp, independent=True)
    if lin is not None:
        write_html(lin, str(folder / "linearizability.html"))
    try:
        _plots(folder, tally, intervals, recorder.events, failing_ops(lin))
    except Exception as exc:  # pictures are a bonus; the verdict must still be written
        results["plot_error"] = f"{type(exc).__name__}: {exc}"
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def failing_ops(lin: Any) -> tuple[list[Operation], list[Operation]]:
    """The ops of every violation's failing window, and the op each one blocked at."""
    window: list[Operation] = []
    blocked: list[Operation] = []
    for part in getattr(lin, "partitions", []):
        example = part.counterexample
        if example is not None:
            window.extend(example.window)
            blocked.append(example.blocked)
    return window, blocked


def _shade(ax: Any, intervals: list[tuple[float, float, str]]) -> None:
    for i, (start, end, name) in enumerate(intervals):
        ax.axvspan(start, end, color="#888888", alpha=0.18, label="nemesis" if i == 0 else None)
        ax.text(start, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom")


def _plots(
    folder: Path,
    tally: Tally,
    intervals: list[tuple[float, float, str]],
    events: list[Event],
    failing: tuple[list[Operation], list[Operation]] = ([], []),
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = tally.latencies
    fig, ax = plt.subplots(figsize=(10, 4))
    for outcome, colour in COLOURS.items():
        xs = [t for t, _, _, o in points if o == outcome]
        ys = [1000 * lat for _, lat, _, o in points if o == outcome]
        if xs:
            ax.scatter(xs, ys, s=4, color=colour, label=outcome)
    _shade(ax, intervals)
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("operation latency")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    horizon = int(max((t for t, _, _, _ in points), default=0)) + 1
    for outcome, colour in COLOURS.items():
        counts = [0] * horizon
        for t, lat, _, o in points:
            if o == outcome:
                counts[min(horizon - 1, int(t + lat))] += 1
        ax.plot(range(horizon), counts, color=colour, label=outcome, drawstyle="steps-post")
    _shade(ax, intervals)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("ops/s")
    ax.set_title("throughput by outcome")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "throughput.png", dpi=110)
    plt.close(fig)

    fig = timeline_figure(events, intervals, failing)
    fig.savefig(folder / "timeline.png", dpi=110)
    plt.close(fig)


def timeline_figure(
    events: list[Event],
    intervals: list[tuple[float, float, str]],
    failing: tuple[list[Operation], list[Operation]] = ([], []),
) -> Any:
    """One row per process, a bar per op coloured by outcome; the nemesis periods shaded;
    a violation's failing window outlined and its failing op marked and described."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(10, 4))
    starts: dict[Any, float] = {}
    rows: dict[Any, int] = {}
    for event in events:
        if event.is_nemesis or event.time is None:
            continue
        t = event.time / 1e9
        if event.type == "invoke":
            starts[event.process] = t
            continue
        began = starts.pop(event.process, t)
        row = rows.setdefault(event.process, len(rows))
        ax.plot([began, t], [row, row], color=COLOURS.get(event.type, "#555555"), linewidth=3)
    window, blocked = failing
    for op in window:  # the violation's failing window, outlined in black
        if op.process in rows and op.call_time is not None:
            end = op.ret_time if op.ret_time is not None else op.call_time
            row = rows[op.process]
            ax.plot(
                [op.call_time / 1e9, end / 1e9],
                [row, row],
                color="black",
                linewidth=7,
                zorder=0,
                label="failing window" if op is window[0] else None,
            )
    for op in blocked:
        if op.process in rows and op.call_time is not None:
            at = (op.ret_time if op.ret_time is not None else op.call_time) / 1e9
            ax.plot(
                [at],
                [rows[op.process]],
                marker="X",
                markersize=12,
                color="#d62728",
                linestyle="none",
                label="failing op" if op is blocked[0] else None,
            )
            ax.annotate(
                op.describe(),
                (at, rows[op.process]),
                textcoords="offset points",
                xytext=(-8, 8),  # above and to the left: failing ops are often the last
                ha="right",
                fontsize=8,
                color="#d62728",
            )
    _shade(ax, intervals)
    # one integer tick per process row, named by its process id when they fit
    if 0 < len(rows) <= 40:
        ax.set_yticks(range(len(rows)), [str(p) for p in rows], fontsize=7)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("process")
    ax.set_title("operations per process (green ok, red fail, yellow info)")
    if window or blocked:  # beside the drawing, never over the marks
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig
