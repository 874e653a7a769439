"""The trade-off ledger: one row per setting x nemesis, what was promised, what held,
how stale and how slow it was, what PBS predicted, and how available it stayed.

Rules: a row is built from the results of one or more runs of one cell (the simulator
runs several seeds per cell; rates are pooled over them: stale reads over reads, ok
calls over calls; latencies are the median over runs of each run's p50/p99). The page
is one self-contained HTML file (the plot is embedded), written beside the matrix's
runs as ``ledger.html``; every value is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Row:
    consistency: str
    nemesis: str
    promise: str
    runs: int
    held: int
    stale_rate: float | None
    predicted_stale: float | None
    read_ms: tuple[float | None, float | None]
    write_ms: tuple[float | None, float | None]
    availability: float | None

    @property
    def verdict(self) -> str:
        return "held" if self.held == self.runs else f"violated in {self.runs - self.held}"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def row(consistency: str, nemesis: str, runs: Sequence[dict[str, Any]]) -> Row:
    reads = sum(r["staleness"].get("reads", 0) for r in runs)
    stale = sum(r["staleness"]["stale_reads"] for r in runs)
    calls = sum(sum(r["ops"].values()) for r in runs)
    ok = sum(r["ops"].get("ok", 0) for r in runs)
    predicted = [
        r["pbs"]["predicted"]["p_stale_read"]
        for r in runs
        if r.get("pbs", {}).get("predicted", {}).get("available")
    ]

    def lat(f: str, q: str) -> float | None:
        return _median([r["latency_ms"][f][q] for r in runs if q in r["latency_ms"].get(f, {})])

    return Row(
        consistency,
        nemesis,
        runs[0]["promise"] if runs else "-",
        len(runs),
        sum(r["verdict"] == "held" for r in runs),
        round(stale / reads, 4) if reads else None,
        _median(predicted),
        (lat("read", "p50"), lat("read", "p99")),
        (lat("write", "p50"), lat("write", "p99")),
        round(ok / calls, 4) if calls else None,
    )


def _fmt(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def _plot(rows: Sequence[Row]) -> str:
    """Read p99 against the observed stale-read rate, one point per row, as a data URL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        if r.read_ms[1] is None or r.stale_rate is None:
            continue
        ax.scatter(r.read_ms[1], r.stale_rate, s=30)
        ax.annotate(f"{r.consistency}/{r.nemesis}", (r.read_ms[1], r.stale_rate), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("read latency p99 (ms)")
    ax.set_ylabel("observed stale-read rate")
    ax.set_title("latency against staleness, per setting x nemesis")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_ledger(path: Path, rows: Sequence[Row], title: str) -> Path:
    head = (
        "setting", "nemesis", "promise", "runs", "verdict", "stale reads (observed)",
        "stale reads (PBS)", "read p50/p99 ms", "write p50/p99 ms", "availability",
    )  # fmt: skip
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(cell)}</td>"
            for cell in (
                r.consistency,
                r.nemesis,
                r.promise,
                str(r.runs),
                r.verdict,
                _fmt(r.stale_rate),
                _fmt(r.predicted_stale),
                f"{_fmt(r.read_ms[0])} / {_fmt(r.read_ms[1])}",
                f"{_fmt(r.write_ms[0])} / {_fmt(r.write_ms[1])}",
                _fmt(r.availability),
            )
        )
        + "</tr>"
        for r in rows
    )
    try:
        image = f'<img id="plot" alt="latency against staleness" src="{_plot(rows)}">'
    except Exception as exc:  # the table is the ledger; the picture is a bonus
        image = f"<p>plot unavailable: {html.escape(str(exc))}</p>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#eee}}</style>
</head><body><h1>{html.escape(title)}</h1>
<table id="ledger"><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr></thead>
<tbody>{body}</tbody></table>
<p>Observed rates pool every run of a cell; PBS is predicted from each run's replica round
trips (symmetric links assumed) and is absent for the linearizable level.</p>
{image}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
