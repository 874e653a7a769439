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
  once (1-minimal when every probe finished in time).
- Every probe has a node cap and a shared time budget; a probe that runs out counts as
  "did not fail", so the window is always a proven failure, just possibly not minimal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from kvstore.checker.search import NOT_LINEARIZABLE, Call, linearize

# Freed ops are optional, which can make a failing probe expensive to prove; capping each
# probe keeps one hard probe from eating the whole budget (it then counts as "no").
_PROBE_NODES = 20_000


def _fails(
    calls: Sequence[Call],
    fixed: Sequence[int],
    freed: Sequence[int],
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool],
    deadline: float,
) -> bool:
    probe = [calls[i] for i in fixed]
    for i in freed:
        c = calls[i]
        if is_readonly(c.input, c.output):
            continue
        # Keep a known outcome: the op may move or vanish, but not change what it returned.
        probe.append(Call(c.call, None, c.input, c.output))
    res = linearize(probe, init, step, is_readonly, deadline=deadline, max_nodes=_PROBE_NODES)
    return res.verdict == NOT_LINEARIZABLE


def failing_window(
    calls: Sequence[Call],
    blocked: int,
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool],
    budget_s: float = 1.0,
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
    if not _fails(calls, fixed, freed, init, step, is_readonly, deadline):
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
        if _fails(calls, trial, [*freed, *others[:mid]], init, step, is_readonly, deadline):
            lo = mid
        else:
            hi = mid - 1
    head = set(others[:lo])
    freed = [*freed, *others[:lo]]
    fixed = [i for i in fixed if i not in head]

    minimal = True
    for i in list(fixed):
        if time.monotonic() > deadline:
            minimal = False
            break
        trial = [j for j in fixed if j != i]
        if _fails(calls, trial, [*freed, i], init, step, is_readonly, deadline):
            fixed = trial
            freed.append(i)
    if time.monotonic() > deadline:
        minimal = False
    return fixed, minimal
