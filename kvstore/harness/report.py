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

from kvstore.checker import Event, dump_edn, write_html
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
    results["latency_ms"] = latency_ms(tally)
    with open(folder / "history.edn", "w", encoding="utf-8") as fp:
        # Jepsen's convention for many registers: :value [k v], split per key by its
        # independent checker (and by ours)
        dump_edn(recorder.events, fp, independent=True)
    if lin is not None:
        write_html(lin, str(folder / "linearizability.html"))
    try:
        _plots(folder, tally, intervals, recorder.events)
    except Exception as exc:  # pictures are a bonus; the verdict must still be written
        results["plot_error"] = f"{type(exc).__name__}: {exc}"
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def _shade(ax: Any, intervals: list[tuple[float, float, str]]) -> None:
    for i, (start, end, name) in enumerate(intervals):
        ax.axvspan(start, end, color="#888888", alpha=0.18, label="nemesis" if i == 0 else None)
        ax.text(start, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom")


def _plots(
    folder: Path,
    tally: Tally,
    intervals: list[tuple[float, float, str]],
    events: list[Event],
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

    # timeline: one row per worker slot, a bar per op coloured by outcome
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
    _shade(ax, intervals)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("process")
    ax.set_title("operations per process (green ok, red fail, yellow info)")
    fig.tight_layout()
    fig.savefig(folder / "timeline.png", dpi=110)
    plt.close(fig)
