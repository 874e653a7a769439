"""Linearizability search: Wing & Gong's backtracking with Lowe's memoisation.

Rules and invariants:
- Input is one partition's calls: call time, return time (None = never completed, i.e.
  "may happen any time after the call, or never"), and the model's (input, output).
  Times only need to be comparable; at equal times calls sort before returns, so touching
  intervals count as concurrent.
- The history is a doubly linked list of call/return entries in time order. A call may be
  linearised when no return precedes it in the list; lifting an op removes both of its
  entries; a return at the head of what is left means the ops so far cannot be extended
  (backtrack). Every (linearised-set bitset, state) pair is explored at most once.
- Optional ops (no completion) have no return entry and never need linearising: the search
  succeeds once every completed op is placed. Beyond that, three prunings keep it small,
  each sound by an exchange argument:
  * read-only ops (model.is_readonly) that fit the current state are linearised at once and
    never revisited: such an op, already callable, can be moved to the front of any valid
    continuation. So a node's fate is its read's child's fate.
  * an optional op is only tried if it changes the state (a no-op could be dropped).
  * a model may supply `viable(state, read_output)`: if a callable read can never fit
    again, the node is dead (e.g. append-only values must stay prefixes of later reads).
  * optional ops with equal (input, output) are interchangeable; only the earliest-called
    unplaced one of each class is tried.
- The memo is cleared when it exceeds `max_memo` entries: forgetting is sound, and it keeps
  memory bounded on hard histories.
- The deepest blocking point reached gives the longest linearizable prefix: every op that
  returned before the blocking return is placed in the recorded witness. With `viable`
  the search may prune before reaching the true blocking point, so the prefix is then
  only a valid one, not necessarily the longest (the checker re-runs without it).
- Never returns a bare bool: "linearizable", "not linearizable" or "unknown" (deadline
  or `max_nodes` reached).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["linearizable", "not linearizable", "unknown"]
LINEARIZABLE: Verdict = "linearizable"
NOT_LINEARIZABLE: Verdict = "not linearizable"
UNKNOWN_VERDICT: Verdict = "unknown"

_NIL = -1
_DEAD = -2
_HEAD = 0


@dataclass(frozen=True, slots=True)
class Call:
    """One op as the search sees it. `ret is None`: optional (no completion)."""

    call: float
    ret: float | None
    input: Any
    output: Any


@dataclass(slots=True)
class SearchResult:
    verdict: Verdict
    # A witness: indices into the calls, in linearisation order. For "linearizable" every
    # completed op is in it; otherwise it is the longest linearizable prefix found.
    order: list[int]
    # The op whose completion could not be reached (None when linearizable).
    blocked: int | None
    # Return time of `blocked`: everything that completed strictly before it is placed.
    blocked_at: float | None
    nodes: int = 0
    memo: int = 0
    elapsed: float = 0.0
    states: list[Any] = field(default_factory=list)


def linearize(
    calls: Sequence[Call],
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool] = lambda _i, _o: False,
    deadline: float | None = None,
    viable: Callable[[Any, Any], bool] | None = None,
    max_memo: int = 1_000_000,
    max_nodes: int | None = None,
) -> SearchResult:
    """Search for a linearisation of `calls` from state `init`; see module rules.

    `viable(state, read_output)`, when given, must return False only if no sequence of this
    partition's ops can lead from `state` to a state where that read fits.
    """
    t0 = time.perf_counter()
    n = len(calls)
    inp = [c.input for c in calls]
    out = [c.output for c in calls]
    optional = [c.ret is None for c in calls]
    ro = [(not optional[i]) and is_readonly(inp[i], out[i]) for i in range(n)]
    bits = [1 << i for i in range(n)]

    # Symmetry classes among optional ops: the previous op (in call order) of the same class.
    prev_same = [_NIL] * n
    last_of: dict[Any, int] = {}
    for i in sorted(range(n), key=lambda j: calls[j].call):
        if optional[i]:
            key = (inp[i], out[i])
            prev_same[i] = last_of.get(key, _NIL)
            last_of[key] = i

    # Entries 1..m in time order; kind 0 = call, 1 = return.
    raw: list[tuple[float, int, int]] = []
    for i, c in enumerate(calls):
        raw.append((c.call, 0, i))
        if c.ret is not None:
            raw.append((c.ret, 1, i))
    raw.sort()
    m = len(raw)
    kind = [0] + [k for _, k, _ in raw]
    opi = [_NIL] + [i for _, _, i in raw]
    match = [_NIL] * (m + 1)  # call entry -> its return entry
    call_entry = [_NIL] * n
    for e in range(1, m + 1):
        if kind[e] == 0:
            call_entry[opi[e]] = e
    for e in range(1, m + 1):
        if kind[e] == 1:
            match[call_entry[opi[e]]] = e
    nxt = [*list(range(1, m + 1)), _NIL]
    prv = list(range(-1, m))

    remaining = sum(1 for o in optional if not o)
    state = init
    lin = 0
    stack: list[tuple[int, Any, bool]] = []
    cache: set[tuple[int, Any]] = set()
    best_rank = -1
    best_order: list[int] = []
    best_blocked: int | None = None
    nodes = 0

    def finish(verdict: Verdict, order: list[int], blocked: int | None) -> SearchResult:
        states = []
        s = init
        for i in order:
            _, s = step(s, inp[i], out[i])
            states.append(s)
        return SearchResult(
            verdict=verdict,
            order=order,
            blocked=blocked,
            blocked_at=(calls[blocked].ret if blocked is not None else None),
            nodes=nodes,
            memo=len(cache),
            elapsed=time.perf_counter() - t0,
            states=states,
        )

    if remaining == 0:
        return finish(LINEARIZABLE, [], None)

    node_start = True
    entry = nxt[_HEAD]
    while True:
        if node_start:
            node_start = False
            nodes += 1
            if not nodes & 0x3FF and (
                (deadline is not None and time.monotonic() > deadline)
                or (max_nodes is not None and nodes > max_nodes)
            ):
                best_order = best_order or [opi[f[0]] for f in stack]
                return finish(UNKNOWN_VERDICT, best_order, best_blocked)
            if len(cache) > max_memo:
                # Forgetting memo entries is sound (they only prune); it bounds memory.
                cache.clear()
            # Phase 1: a fitting read-only op decides this node on its own.
            e = nxt[_HEAD]
            forced = _NIL
            while e != _NIL and kind[e] == 0:
                i = opi[e]
                if ro[i]:
                    if step(state, inp[i], out[i])[0]:
                        forced = e
                        break
                    if viable is not None and not viable(state, out[i]):
                        forced = _DEAD
                        break
                e = nxt[e]
            if forced == _DEAD:
                entry = _NIL  # a pending read can never fit any more
            elif forced != _NIL:
                i = opi[forced]
                nl = lin | bits[i]
                k = (nl, state)
                if k not in cache:
                    cache.add(k)
                    stack.append((forced, state, True))
                    lin = nl
                    # lift
                    p, q = prv[forced], nxt[forced]
                    nxt[p] = q
                    if q != _NIL:
                        prv[q] = p
                    r = match[forced]
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    if q != _NIL:
                        prv[q] = p
                    remaining -= 1
                    if remaining == 0:
                        return finish(LINEARIZABLE, [opi[f[0]] for f in stack], None)
                    node_start = True
                    continue
                entry = _NIL  # child already failed: so does this node
            else:
                entry = nxt[_HEAD]
        if entry != _NIL and kind[entry] == 0:
            i = opi[entry]
            if ro[i]:
                entry = nxt[entry]
                continue
            if optional[i]:
                ps = prev_same[i]
                if ps != _NIL and not lin & bits[ps]:
                    entry = nxt[entry]
                    continue
                ok, ns = step(state, inp[i], out[i])
                if not ok or ns == state:
                    entry = nxt[entry]
                    continue
            else:
                ok, ns = step(state, inp[i], out[i])
                if not ok:
                    entry = nxt[entry]
                    continue
            nl = lin | bits[i]
            k = (nl, ns)
            if k in cache:
                entry = nxt[entry]
                continue
            cache.add(k)
            stack.append((entry, state, False))
            lin = nl
            state = ns
            p, q = prv[entry], nxt[entry]
            nxt[p] = q
            if q != _NIL:
                prv[q] = p
            r = match[entry]
            if r != _NIL:
                p, q = prv[r], nxt[r]
                nxt[p] = q
                if q != _NIL:
                    prv[q] = p
                remaining -= 1
                if remaining == 0:
                    return finish(LINEARIZABLE, [opi[f[0]] for f in stack], None)
            node_start = True
            continue
        # Blocked: the first remaining return cannot be reached from here.
        if entry != _NIL and entry > best_rank:
            best_rank = entry
            best_order = [opi[f[0]] for f in stack]
            best_blocked = opi[entry]
        while True:
            if not stack:
                return finish(NOT_LINEARIZABLE, best_order, best_blocked)
            e, state, forced_frame = stack.pop()
            i = opi[e]
            lin ^= bits[i]
            r = match[e]
            if r != _NIL:
                nxt[prv[r]] = r
                if nxt[r] != _NIL:
                    prv[nxt[r]] = r
                remaining += 1
            nxt[prv[e]] = e
            if nxt[e] != _NIL:
                prv[nxt[e]] = e
            if not forced_frame:
                entry = nxt[e]
                break
