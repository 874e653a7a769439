"""Shrinking a non-linearizable partition to a small window that fails on its own.

Rules and invariants:
- "Freeing" an op treats it as indeterminate, keeping its recorded outcome: it may have
  taken effect at any time after its invocation, or not at all. That only relaxes the
  history, so a history that still fails with some ops freed proves the violation lies
  among the ops left fixed: the window. (Deleting ops would not be sound: deleting a
  write can make a later read fail for another reason.) Freed reads have no effect and
  are dropped.
- Start with the ops that completed no later than the blocked op fixed and the ones still
  pending then freed (that fails: it is the failing prefix); ops invoked later cannot
  precede any of them and are left out. Then free the longest failing run of
  earliest-called ops (monotone, so binary search), then try freeing each remaining op
  once (1-minimal when every probe of that pass reached a verdict: a probe that ran out of
  nodes is retried with a larger cap while the budget lasts).
- Probes search with the model's look-ahead (`viability`), `observers` and `blind`
  prunings: freed ops keep their inputs, so all hold for a probe as for the partition,
  and without them a probe that frees many ops is exponential (a kv window freeing 30
  appends; etcd_057's register windows freeing ~70 ops: unproven in 120 s without
  `blind`, 0.2 s with it).
- Every probe has a node cap and a shared time budget; a probe that runs out counts as
  "did not fail", so the window is always a proven failure, just possibly not minimal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from kvstore.checker.history import Operation
from kvstore.checker.models import UNKNOWN, register_step
from kvstore.checker.search import (
    NOT_LINEARIZABLE,
    UNKNOWN_VERDICT,
    Call,
    Observers,
    Verdict,
    linearize,
)

# Freed ops are optional, which can make a failing probe expensive to prove; capping each
# probe keeps one hard probe from eating the whole budget (it then counts as "no").
_PROBE_NODES = 5_000
# Probes of the final pass that ran out are retried with this many times more nodes.
_ESCALATE = 4


class _Other:
    """Stands for every register value no fixed op of a probe can tell apart."""

    def __repr__(self) -> str:
        return "<other>"


_OTHER: Any = _Other()

# A model's `viability`: from a probe's inputs, a look-ahead predicate or None.
Viability = Callable[[Sequence[Any]], Callable[[Any, Any], bool] | None]


def _register_shaped(inp: Any) -> bool:
    if not (type(inp) is tuple and len(inp) == 2):
        return False
    f, arg = inp
    return f in ("read", "write") or (f == "cas" and type(arg) is tuple and len(arg) == 2)


def _canonical_freed(fixed: Sequence[Call], freed: list[Call]) -> list[Call]:
    """Register / cas-register probes: give freed writes of values that nothing inspects one
    shared value, so the search treats them as interchangeable (see `_fails`)."""
    if not all(_register_shaped(c.input) for c in (*fixed, *freed)):
        return freed
    # Values some op of the probe compares the state with.
    seen: set[Any] = set()
    for c in fixed:
        f, arg = c.input
        if f == "read":
            if c.output is UNKNOWN:
                return freed
            seen.add(c.output)
        elif f == "cas":
            seen.add(arg[0])
    for c in freed:
        if c.input[0] == "cas":
            seen.add(c.input[1][0])
    try:
        out: list[Call] = []
        for c in freed:
            f, arg = c.input
            if f == "read":
                out.append(c)
                continue
            value = arg if f == "write" else arg[1]
            if value not in seen:
                value = _OTHER
            inp = ("write", value) if f == "write" else ("cas", (arg[0], value))
            # A freed write's outcome does not matter (step ignores it); a freed cas only
            # takes effect when it succeeds, so a known success and an unknown are alike.
            out.append(Call(c.call, None, inp, True))
        return out
    except TypeError:  # unhashable values: leave the probe as it is
        return freed


def _fails(
    calls: Sequence[Call],
    fixed: Sequence[int],
    freed: Sequence[int],
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool],
    deadline: float,
    max_nodes: int = _PROBE_NODES,
    viability: Viability | None = None,
    observers: Observers | None = None,
    blind: Callable[[Any], bool] | None = None,
) -> Verdict:
    probe = [calls[i] for i in fixed]
    loose: list[Call] = []
    for i in freed:
        c = calls[i]
        if is_readonly(c.input, c.output):
            continue
        # Keep a known outcome: the op may move or vanish, but not change what it returned.
        loose.append(Call(c.call, None, c.input, c.output))
    if step is register_step:
        loose = _canonical_freed(probe, loose)
    probe.extend(loose)
    # The model's look-ahead pruning holds for a probe as for the partition: freed ops keep
    # their inputs. Only the verdict is used, so its shorter prefixes do not matter.
    viable = viability([c.input for c in probe]) if viability is not None else None
    res = linearize(
        probe,
        init,
        step,
        is_readonly,
        deadline=deadline,
        max_nodes=max_nodes,
        viable=viable,
        observers=observers,
        blind=blind,
    )
    return res.verdict


def failing_window(
    calls: Sequence[Call],
    blocked: int,
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool],
    budget_s: float = 1.0,
    viability: Viability | None = None,
    observers: Observers | None = None,
    blind: Callable[[Any], bool] | None = None,
) -> tuple[list[int], bool]:
    """Indices of a window of `calls` that fails on its own, and whether it is 1-minimal."""
    deadline = time.monotonic() + budget_s
    cut = calls[blocked].ret
    assert cut is not None
    # Ops invoked after the cut follow every op that completed by then: irrelevant.
    relevant = sorted(
        (i for i, c in enumerate(calls) if c.call <= cut), key=lambda i: calls[i].call
    )
    fixed = [i for i in relevant if (r := calls[i].ret) is not None and r <= cut]
    in_prefix = set(fixed)
    freed = [i for i in relevant if i not in in_prefix]

    def fails(trial: Sequence[int], loose: Sequence[int], cap: int) -> Verdict:
        return _fails(
            calls,
            trial,
            loose,
            init,
            step,
            is_readonly,
            deadline,
            cap,
            viability,
            observers,
            blind,
        )

    if fails(fixed, freed, 20 * _PROBE_NODES) != NOT_LINEARIZABLE:
        # Only if the probe ran out of budget or `blocked` came from a search with
        # look-ahead pruning: the whole partition is the one window known to fail.
        return list(range(len(calls))), False

    # Binary search the longest run of earliest ops that can be freed.
    others = [i for i in fixed if i != blocked]
    lo, hi = 0, len(others)  # lo: known to fail when freeing others[:lo]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        head = set(others[:mid])
        trial = [i for i in fixed if i not in head]
        if fails(trial, [*freed, *others[:mid]], 4 * _PROBE_NODES) == NOT_LINEARIZABLE:
            lo = mid
        else:
            hi = mid - 1
    head = set(others[:lo])
    freed = [*freed, *others[:lo]]
    fixed = [i for i in fixed if i not in head]

    # One-by-one pass: free each op the rest still fails without. Freeing is monotone, so
    # an op kept because freeing it made the (larger) window linearizable stays needed.
    # Probes that ran out are retried with a bigger node cap while time remains.
    cap = _PROBE_NODES
    todo = list(fixed)
    while todo and time.monotonic() <= deadline:
        undecided: list[int] = []
        for i in todo:
            if time.monotonic() > deadline:
                undecided.append(i)
                continue
            trial = [j for j in fixed if j != i]
            v = fails(trial, [*freed, i], cap)
            if v == NOT_LINEARIZABLE:
                fixed = trial
                freed.append(i)
            elif v == UNKNOWN_VERDICT:
                undecided.append(i)
        todo = [i for i in undecided if i in fixed]
        cap *= _ESCALATE
    return fixed, not todo


def _value_of(op: Operation) -> Any:
    return op.input[1] if op.f == "cas" and isinstance(op.input, tuple) else op.input


def describe_window(window: Sequence[Operation]) -> str | None:
    """One sentence on what went wrong, for the common register anomalies, or None.

    Pattern checks on a (small) window: a stale read (a write completed before a read
    began, the read returned another value and nothing in the window wrote it since), and
    a new-then-old inversion (a read returned an older value than a read that finished
    before it began).
    """
    ok = [o for o in window if o.status == "ok"]
    reads = [o for o in ok if o.f in ("read", "get")]
    writes = [o for o in window if o.f in ("write", "put") or (o.f == "cas" and o.output)]
    for a in reads:
        for b in reads:
            # Nothing in the window could have written b's value after a's read.
            if (
                a.ret is not None
                and a.ret < b.call
                and a.output != b.output
                and not any(_value_of(w) == b.output and w.call > a.call for w in writes)
            ):
                return (
                    f"read returned {b.output!r} after a read that finished earlier had "
                    f"already returned {a.output!r}"
                )
    for r in reads:
        for w in writes:
            if w.status != "ok" or w.ret is None or w.ret >= r.call:
                continue
            x = _value_of(w)
            if r.output == x:
                continue
            since = [
                o
                for o in writes
                if o is not w and _value_of(o) == r.output and (o.ret is None or o.ret > w.ret)
            ]
            later = [o for o in writes if o is not w and o.ret is not None and o.ret < r.call]
            # The old value is pinned before the write: written, or read, before it began.
            older = any(
                _value_of(o) == r.output and o.ret is not None and o.ret < w.call for o in writes
            ) or any(o.output == r.output and o.ret is not None and o.ret < w.call for o in reads)
            if (older or len(window) == 2) and not since and not any(o.call > w.ret for o in later):
                return (
                    f"read returned {r.output!r}, but the write of {x!r} completed before the "
                    f"read began and nothing wrote {r.output!r} since"
                )
    return None
