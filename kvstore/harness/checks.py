"""Checks of a recorded history against the promise of its consistency setting.

Rules: the linearizability check always runs (with a time limit), because showing that
a weaker setting is *not* linearizable, and where, is half the point; the staleness
analyses always run; the verdict is only about the promised (or ``--expect``ed)
guarantee: ``held``, ``violated`` or ``unknown``.

Two rules hold whatever the promise (see ``guarantees``):
- A read of a value no write could have produced (its write definitely failed, was
  never issued, or began only after the read ended; ``kvstore.checker.unexpected``)
  violates every promise, eventual included; the results name each such read.
- A lost write (``kvstore.checker.staleness``: acknowledged, never read, and missed by a
  read that began after it completed) violates the strict promises (``linearizable``,
  ``no-stale-reads``) unless the run had a clock nemesis; under one it is allowed and
  reported, each with whether it overlapped a clock-fault period.
- A resurrected delete (a final read, after healing and the repair round, returns a value
  whose write completed before an acknowledged delete of that key began, with no later
  write of it) violates every promise unless the run had a clock nemesis: within the
  grace period the tombstone is newer and repair must let it win everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kvstore.checker import History, Operation, StalenessReport, analyse_staleness, check_history
from kvstore.checker.result import CheckResult, op_json
from kvstore.checker.staleness import StaleRead
from kvstore.checker.unexpected import find_unexpected_reads
from kvstore.harness.workers import FINAL_PROCESS

EXIT_CODES = {"held": 0, "violated": 1, "unknown": 3}
# The promises of strict quorums (R + W > N, primaries only): a lost write breaks them
# unless clocks were skewed.
STRICT_PROMISES = ("linearizable", "no-stale-reads")


def evaluate(
    history: History,
    *,
    options: Any,
    n: int,
    settle: dict[str, Any],
    convergence: dict[str, Any],
    promise: str,
    write_once: bool = False,
    nemesis_intervals: Sequence[tuple[float, float, str]] = (),
) -> dict[str, Any]:
    """The verdict on ``promise`` and every figure behind it.

    ``nemesis_intervals`` are the runner's fault periods (start s, end s, nemesis name),
    on the recorder's clock; ``options.nemeses`` says which nemeses the run had.
    """
    lin: CheckResult = check_history(
        history, "register", time_limit=options.check_time_limit, explain=True
    )
    stale = analyse_staleness(history)
    unexplained_stale = _not_from_lost_writes(history, stale)
    unexpected = find_unexpected_reads(history)
    lost = _lost_writes(stale, promise, list(options.nemeses), nemesis_intervals)
    checks: dict[str, Any] = {
        "linearizable": lin.verdict,
        "no-stale-reads": "held" if not unexplained_stale else "violated",
        "no-unexpected-values": "held" if not unexpected else "violated",
        "no-lost-writes": lost["check"],
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
    if unexpected:
        # A write that never happened was read: no promise allows that, eventual included.
        verdict = "violated"
        reasons.append(
            f"{len(unexpected)} reads of values no write could have produced"
            f" (first: {unexpected[0].describe()})"
        )
    if lost["check"] == "violated":
        verdict = "violated"
        reasons.append(
            f"{lost['count']} acknowledged writes lost without clock faults"
            f" (first: {lost['examples'][0]['write']['text']})"
        )
    resurrected = _resurrected(history)
    checks["no-resurrected-deletes"] = (
        "held" if not resurrected else "allowed" if "clock" in options.nemeses else "violated"
    )
    if checks["no-resurrected-deletes"] == "violated":
        verdict = "violated"
        reasons.append(
            f"{len(resurrected)} deleted keys came back after repair"
            f" (first: {resurrected[0]['read']['text']})"
        )
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
        "unexpected_reads": {
            "count": len(unexpected),
            "examples": [u.to_json() for u in unexpected[:10]],
        },
        "lost_writes": lost,
        "resurrected_deletes": {"count": len(resurrected), "examples": resurrected[:10]},
        "settle": settle,
        "convergence": convergence,
        "durability": durability,
        "_lin_result": lin,
        "_stale": stale,
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
        if op.status == "ok" and op.f in ("write", "delete"):
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


def _resurrected(history: History) -> list[dict[str, Any]]:
    """Final reads that returned a value an acknowledged delete had already replaced.

    Values are unique per key (the workloads), so a read's value names its write; a
    final read runs after healing and the repair round, when every replica should hold
    the newest version, the tombstone included.
    """
    writes: dict[tuple[Any, Any], Operation] = {}
    deletes: dict[Any, list[Operation]] = {}
    for op in history.operations():
        if op.f == "write" and op.status != "fail":
            writes[(op.key, op.input)] = op
        elif op.f == "delete" and op.status == "ok":
            deletes.setdefault(op.key, []).append(op)
    out = []
    for op in history.operations():
        if op.f != "read" or op.status != "ok" or op.output is None:
            continue
        if not isinstance(op.process, int) or op.process < FINAL_PROCESS:
            continue
        source = writes.get((op.key, op.output))
        if source is None or source.ret_time is None:
            continue  # unexpected (reported elsewhere), or of unknown outcome
        later = [
            d
            for d in deletes.get(op.key, [])
            if d.call_time is not None and d.call_time > source.ret_time
        ]
        if later:
            out.append(
                {"read": op_json(op), "write": op_json(source), "delete": op_json(later[-1])}
            )
    return out


def _lost_writes(
    stale: StalenessReport,
    promise: str,
    nemeses: list[str],
    intervals: Sequence[tuple[float, float, str]],
) -> dict[str, Any]:
    """Whether the run's lost writes break ``promise``, and when each happened.

    Why a lost write without clock faults breaks a strict promise: a strict quorum read
    meets at least one primary of every acknowledged write W. It can return an older
    value only if that value's version outranks W's timestamp. With hybrid logical
    clocks fed by one true physical clock (the nodes share a host), a write that
    completed before W began was stamped earlier in real time, so its wall component is
    lower (the gap holds at least one network round trip, far more than the clock's 1 us
    resolution). What this rule therefore does not count:
    - indefinite writes: they are never lost writes (only acknowledged writes are), and
      one that was read has completion +infinity, so it is never "older" than W;
    - sloppy quorums and R + W <= N: there a read may miss W on replicas W never
      reached, and a later write may hide it for good without any clock fault; such
      settings promise ``eventual`` (unless ``--expect`` holds them to a strict
      promise, where the read that missed W is a stale read the promise forbids);
    - a clock nemesis anywhere in the run: a skewed node's hybrid clock stays ahead
      after its period ends (until real time catches up, seconds later), so a lost write
      after a period can still be the skew's doing; the attribution below says how long
      after.
    What it does count: a lying disk (the ``lying-disk`` nemesis) dropping W from the
    replica the read met; that breaks "acknowledged = fsync'd on W replicas", which
    every setting promises. A wall clock stepped backwards on the host during a run
    would break the argument too; that is not a fault the harness injects.
    """
    clock = "clock" in nemeses
    periods = [(s * 1e9, e * 1e9) for s, e, name in intervals if name == "clock"]
    if not stale.lost_writes:
        check = "held"
    elif promise in STRICT_PROMISES and not clock:
        check = "violated"
    else:
        check = "allowed"
    # Every lost write has a read that missed it: begun after it completed, returning a
    # value whose write completed before it began. That read is a stale read.
    stale_by_key: dict[Any, list[StaleRead]] = {}
    for s in stale.stale_reads:
        stale_by_key.setdefault(s.read.key, []).append(s)

    def overlaps(op: Operation | None) -> bool:
        if op is None or op.call_time is None:
            return False
        end = op.ret_time if op.ret_time is not None else float("inf")
        return any(op.call_time <= e and end >= b for b, e in periods)

    def attribution(w: Operation) -> dict[str, Any]:
        assert w.call_time is not None and w.ret_time is not None  # acknowledged, timed
        missed_by = next(
            (
                s
                for s in stale_by_key.get(w.key, [])
                if s.read.call_time is not None
                and s.read.call_time > w.ret_time
                and (
                    s.source is None
                    or (s.source.ret_time is not None and s.source.ret_time < w.call_time)
                )
            ),
            None,
        )
        ended_before = [e for _, e in periods if e < w.call_time]
        return {
            "write": op_json(w),
            "missed_by": op_json(missed_by.read) if missed_by is not None else None,
            "read_returned": (
                op_json(missed_by.source)
                if missed_by is not None and missed_by.source is not None
                else None
            ),
            "overlaps_clock_fault": overlaps(w),
            "source_overlaps_clock_fault": overlaps(
                missed_by.source if missed_by is not None else None
            ),
            "ms_after_clock_fault": (
                round((w.call_time - max(ended_before)) / 1e6, 3) if ended_before else None
            ),
        }

    rule = {
        "held": "no lost writes",
        "violated": f"lost writes break {promise!r} without clock faults",
        "allowed": ("allowed: the run had clock faults" if clock else f"allowed by {promise!r}"),
    }[check]
    described = [attribution(w) for w in stale.lost_writes]
    return {
        "count": len(stale.lost_writes),
        "check": check,
        "rule": rule,
        "clock_faults": clock,
        "overlapping_clock_faults": sum(d["overlaps_clock_fault"] for d in described),
        "examples": described[:10],
    }


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
