"""Checks of a recorded history against the promise of its consistency setting.

Rules: the linearizability check always runs (with a time limit), because showing that
a weaker setting is *not* linearizable, and where, is half the point; the staleness
analyses always run; the verdict is only about the promised (or ``--expect``ed)
guarantee: ``held``, ``violated`` or ``unknown``.
"""

from __future__ import annotations

from typing import Any

from kvstore.checker import History, Operation, StalenessReport, analyse_staleness, check_history
from kvstore.checker.result import CheckResult
from kvstore.checker.staleness import StaleRead
from kvstore.harness.workers import FINAL_PROCESS

EXIT_CODES = {"held": 0, "violated": 1, "unknown": 3}


def evaluate(
    history: History,
    *,
    options: Any,
    n: int,
    settle: dict[str, Any],
    convergence: dict[str, Any],
    promise: str,
    write_once: bool = False,
) -> dict[str, Any]:
    lin: CheckResult = check_history(
        history, "register", time_limit=options.check_time_limit, explain=True
    )
    stale = analyse_staleness(history)
    unexplained_stale = _not_from_lost_writes(history, stale)
    checks: dict[str, Any] = {
        "linearizable": lin.verdict,
        "no-stale-reads": "held" if not unexplained_stale else "violated",
        "converged": "held" if convergence["converged"] else "violated",
    }
    if promise == "linearizable":
        verdict = {"linearizable": "held", "not linearizable": "violated"}.get(
            lin.verdict, "unknown"
        )
        reasons = [] if verdict == "held" else [f"linearizability check: {lin.verdict}"]
    elif promise == "no-stale-reads":
        verdict = checks["no-stale-reads"]
        reasons = [f"{len(unexplained_stale)} stale reads"] if unexplained_stale else []
    elif promise == "eventual":
        verdict = checks["converged"]
        reasons = []
    else:
        raise ValueError(f"unknown guarantee {promise!r}")
    if not convergence["converged"]:
        verdict = "violated"
        reasons.append(f"{len(convergence['diverged_keys'])} keys did not converge")
    durability = _durability(history) if write_once else None
    if durability is not None:
        checks["durable"] = "held" if not durability["lost"] else "violated"
        if durability["lost"]:
            # every setting promises that an acknowledged write is kept (DESIGN.md)
            verdict = "violated"
            reasons.append(f"{durability['lost']} acknowledged writes lost")
    return {
        "promise": promise,
        "verdict": verdict,
        "exit_code": EXIT_CODES[verdict],
        "reasons": reasons,
        "checks": checks,
        "linearizability": lin.to_json(),
        "staleness": stale.to_json(),
        "stale_reads_not_from_lost_writes": len(unexplained_stale),
        "settle": settle,
        "convergence": convergence,
        "durability": durability,
        "_lin_result": lin,
    }


def _not_from_lost_writes(history: History, stale: StalenessReport) -> list[StaleRead]:
    """The stale reads that missed at least one write which was *not* lost.

    A read that missed only lost writes (writes that lost last-writer-wins, e.g. to an
    older write with a higher timestamp) is what DESIGN.md reports as lost writes, not
    as a broken no-stale-reads promise.
    """
    lost = {op.id for op in stale.lost_writes}
    writes: dict[Any, list[Operation]] = {}
    for op in history.operations():
        if op.status == "ok" and op.f == "write":
            writes.setdefault(op.key, []).append(op)
    out = []
    for s in stale.stale_reads:
        read, source = s.read, s.source
        floor = source.ret_time if source is not None and source.ret_time is not None else -1
        missed = [
            w
            for w in writes.get(read.key, [])
            if w.ret_time is not None
            and read.call_time is not None
            and w.ret_time < read.call_time
            and w.call_time is not None
            and floor < w.call_time
        ]
        if any(w.id not in lost for w in missed):
            out.append(s)
    return out


def _durability(history: History) -> dict[str, Any]:
    """Write-once keys: every acknowledged write must be what the final read returns.

    The final reads (``all`` replicas, blocking repair, after healing) are the ops of the
    settle phase's processes; a key whose final read failed is counted as unchecked.
    """
    final: dict[Any, Operation] = {}
    writes: list[Operation] = []
    for op in history.operations():
        if isinstance(op.process, int) and op.process >= FINAL_PROCESS:
            final[op.key] = op
        elif op.f == "write" and op.status == "ok":
            writes.append(op)
    lost, unchecked = [], 0
    for w in writes:
        read = final.get(w.key)
        if read is None or read.status != "ok":
            unchecked += 1
        elif read.output != w.input:
            lost.append(w)
    return {
        "acknowledged_writes": len(writes),
        "lost": len(lost),
        "unchecked": unchecked,
        "lost_examples": [
            f"{w.describe()} (final read: {final[w.key].output!r})" for w in lost[:10]
        ],
    }
