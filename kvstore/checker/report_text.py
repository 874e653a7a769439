"""Human-readable summaries of check and staleness results (plain text, no colour codes).

Rules: failing partitions first, then a one-line count of the rest; at most `limit` ops
of any list are printed so a huge history still gives a short summary. Text taken from
the history is shown as a repr or through `printable`, so a hostile history cannot put
terminal escape sequences (or text stdout cannot encode) on the screen.
"""

from __future__ import annotations

from typing import Any

from kvstore.checker.history import printable
from kvstore.checker.result import CheckResult, PartitionResult
from kvstore.checker.staleness import StalenessReport


def _key(p: PartitionResult) -> str:
    return "(single register)" if p.key is None else f"key {p.key!r}"


def _state(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:28] + "..." + r[-28:]


def _line(line: int | None) -> str:
    return "" if line is None else f"  [line {line}]"


def format_result(res: CheckResult, limit: int = 12) -> str:
    lines: list[str] = []
    src = printable(res.source or "<history>")
    lines.append(
        f"{src}: {res.ops} ops, format {res.format}, model {res.model}, "
        f"{len(res.partitions)} partition(s)"
    )
    lines.append(f"verdict: {res.verdict.upper()}  ({res.elapsed:.3f} s)")
    counts: dict[str, int] = {}
    for p in res.partitions:
        counts[p.verdict] = counts.get(p.verdict, 0) + 1
    if len(res.partitions) > 1:
        lines.append("partitions: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    for p in res.partitions:
        if p.verdict == "unknown":
            lines.append(f"  {_key(p)}: unknown (time limit reached)")
        ce = p.counterexample
        if ce is None:
            continue
        lines.append("")
        lines.append(f"  {_key(p)}: NOT linearizable ({p.checked} ops checked)")
        lines.append(f"    cannot linearise: {ce.blocked.describe()}{_line(ce.blocked.line)}")
        if ce.summary:
            lines.append(f"    what went wrong: {printable(ce.summary)}")
        kind = "1-minimal" if ce.window_minimal else "small, not proven minimal"
        lines.append(
            f"    failing window ({len(ce.window)} ops, {kind}; fails even if every other op "
            "took effect at any time after its invocation, or never):"
        )
        for o in ce.window[:limit]:
            lines.append(f"      {o.describe()}{_line(o.line)}")
        if len(ce.window) > limit:
            lines.append(f"      ... {len(ce.window) - limit} more")
        lines.append(
            f"    longest linearizable prefix: {len(ce.prefix)} ops, "
            f"ending in state {_state(ce.prefix_state)}"
        )
        for s in ce.prefix[-min(limit, 5) :]:
            lines.append(
                f"      {s.op.describe()}: {_state(s.state_before)} -> {_state(s.state_after)}"
            )
    return "\n".join(lines)


def format_staleness(rep: StalenessReport, limit: int = 5) -> str:
    lines = ["staleness:"]
    lines.append(f"  reads {rep.reads}, acknowledged writes {rep.writes}")
    lines.append(f"  stale reads: {len(rep.stale_reads)}")
    for s in rep.stale_reads[:limit]:
        lines.append(
            f"    {s.read.describe()} is {s.versions_behind} version(s) behind "
            f"(missed {s.newest_missed.describe()})"
        )
    ks = ", ".join(f"{k}: {n}" for k, n in sorted(rep.k_staleness.items()))
    lines.append(f"  k-staleness (versions behind: reads): {ks or '-'}")
    pct = rep.t_visibility_percentiles_ms()
    if pct:
        lines.append(
            f"  t-visibility over {len(rep.t_visibility_ns)} writes (ms): "
            + ", ".join(f"{k} {v:.3f}" for k, v in pct.items())
        )
    else:
        lines.append("  t-visibility: no write was followed by a read")
    lines.append(f"  lost writes: {len(rep.lost_writes)}")
    for o in rep.lost_writes[:limit]:
        lines.append(f"    {o.describe()}  [line {o.line}]")
    mr = rep.per_process(rep.monotonic_read_violations)
    ryw = rep.per_process(rep.read_your_writes_violations)
    lines.append(
        "  monotonic-read violations: "
        + (", ".join(f"p{printable(p)}: {n}" for p, n in mr.items()) if mr else "none")
    )
    lines.append(
        "  read-your-writes violations: "
        + (", ".join(f"p{printable(p)}: {n}" for p, n in ryw.items()) if ryw else "none")
    )
    if rep.unexplained_reads:
        lines.append(f"  unexplained reads (value never written): {len(rep.unexplained_reads)}")
    return "\n".join(lines)
