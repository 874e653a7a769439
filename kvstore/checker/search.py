"""Linearizability search: Wing & Gong's backtracking with Lowe's memoisation.

Rules and invariants:
- Input is one partition's calls: call time, return time (None = never completed, i.e.
  "may happen any time after the call, or never"), and the model's (input, output).
  Times only need to be comparable (and ret >= call); at equal times calls sort before
  returns, so touching intervals count as concurrent.
- The completed ops are a doubly linked list of call/return entries in time order. A call
  may be linearised when no return precedes it in the list; lifting an op removes both of
  its entries; a return at the head of what is left means the ops so far cannot be
  extended (backtrack). Every (linearised-set bitset, state) pair is explored at most once.
- Optional ops (no completion) have no return, never need linearising (the search succeeds
  once every completed op is placed) and never bound the frontier, so they sit in a list
  of their own in call order: one is callable when it was called no later than the
  frontier's first return. A node tries its completed ops before its optional ones; the
  order is free, and a witness seldom needs an optional op, so this finds it far sooner
  (timed-out writes placed early are what made old searches backtrack). Beyond that,
  the prunings below keep the search small, each sound by an exchange argument:
  * read-only ops (model.is_readonly) that fit the current state are linearised at once and
    never revisited: such an op, already callable, can be moved to the front of any valid
    continuation. So a node's fate is its read's child's fate.
  * an optional op is only tried if it changes the state (a no-op could be dropped).
  * a model may supply `viable(state, read_output)`: if a callable read can never fit
    again, the node is dead (e.g. append-only values must stay prefixes of later reads).
  * optional ops with equal (input, output) are interchangeable; only the earliest-called
    unplaced one of each class is tried.
  * a model may supply `observers`: an optional op is only tried while some unplaced op
    could observe the state it leads to (otherwise the op after it does not look, and
    the optional op can be dropped; see `linearize`).
  * a model may supply `blind` (register writes): an op whose effect ignores the state
    is never placed right after an optional op. If optional ops o1..ok placed in a row
    from node Z are followed by blind op w in a witness, Z -> w -> (the same rest) is one
    too (the o's are never needed and do not move the frontier), and Z, made by a
    completed op, tries w. A node an optional op made so explores fewer children than a
    full visit: it has a memo key of its own (which a full visit of the same node also
    covers), and its failure is not recorded for dominance.
- Dominance: once a node fails, a node with the same completed ops placed, the same
  state and a superset of its optional ops placed is skipped: it has fewer ops left to
  use and nothing else differs (optional ops never bound the frontier). Each (completed,
  state) keeps the failed node with the fewest optional ops; recorded only on failure,
  never on entry, since an ancestor on the stack has not failed yet.
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
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

Verdict = Literal["linearizable", "not linearizable", "unknown"]
LINEARIZABLE: Verdict = "linearizable"
NOT_LINEARIZABLE: Verdict = "not linearizable"
UNKNOWN_VERDICT: Verdict = "unknown"

_NIL = -1
_DEAD = -2
_HEAD = 0


# From a partition's inputs and outputs: state -> a bitmask of the ops (bit i: op i) that
# could observe it.
Observers = Callable[[Sequence[Any], Sequence[Any]], Callable[[Any], int]]


class Call(NamedTuple):
    """One op as the search sees it. `ret is None`: optional (no completion).

    A tuple, not a dataclass: a check builds one per op, and tuples are made fastest."""

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


def linearize(
    calls: Sequence[Call],
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool] = lambda _i, _o: False,
    deadline: float | None = None,
    viable: Callable[[Any, Any], bool] | None = None,
    max_memo: int = 1_000_000,
    max_nodes: int | None = None,
    observers: Observers | None = None,
    blind: Callable[[Any], bool] | None = None,
) -> SearchResult:
    """Search for a linearisation of `calls` from state `init`; see module rules.

    `viable(state, read_output)`, when given, must return False only if no sequence of this
    partition's ops can lead from `state` to a state where that read fits.
    `observers`, when given, maps the columns (inputs, outputs) to a function from a
    state to a bitmask of the ops that could observe it (a superset is fine); an optional
    op that leads to a state is only tried while one of those is unplaced. The model
    must guarantee that a continuation whose next ops cannot observe the state can drop
    the op that made it (registers: the next op is then a blind write; kv: appends only
    grow a value and a put erases it, so a value that is no prefix of a read to come is
    never seen).
    """
    return linearize_columns(
        [c[0] for c in calls],
        [c[1] for c in calls],
        [c[2] for c in calls],
        [c[3] for c in calls],
        init,
        step,
        is_readonly,
        deadline=deadline,
        viable=viable,
        max_memo=max_memo,
        max_nodes=max_nodes,
        observers=observers,
        blind=blind,
    )


def linearize_columns(
    call: Sequence[float],
    ret: Sequence[float | None],
    inp: Sequence[Any],
    out: Sequence[Any],
    init: Any,
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    is_readonly: Callable[[Any, Any], bool] = lambda _i, _o: False,
    *,
    deadline: float | None = None,
    viable: Callable[[Any, Any], bool] | None = None,
    max_memo: int = 1_000_000,
    max_nodes: int | None = None,
    observers: Observers | None = None,
    blind: Callable[[Any], bool] | None = None,
) -> SearchResult:
    """`linearize` on the calls' fields as columns (op i is call[i], ret[i], inp[i], out[i]):
    what the checker builds, saving a tuple per op."""
    t0 = time.perf_counter()
    n = len(call)
    optional = [r is None for r in ret]
    ro = [r is not None and is_readonly(a, b) for r, a, b in zip(ret, inp, out, strict=True)]
    # Ops whose effect ignores the state (register writes): never right after an optional
    # op; worked out when the first optional op is placed.
    deaf: list[bool] = []
    restricting = blind is not None and any(optional)

    # The list holds the completed ops' entries 1..m in time order; kind 0 = call, 1 =
    # return. Sorting (time, kind, op) puts calls before returns at equal times.
    raw: list[tuple[float, int, int]] = []
    for i, t in enumerate(ret):
        if t is not None:
            raw.append((call[i], 0, i))
            raw.append((t, 1, i))
    raw.sort()
    m = len(raw)
    kind = [0]
    opi = [_NIL]
    match = [_NIL] * (m + 1)  # call entry -> its return entry
    call_entry = [_NIL] * n
    for e, (_, is_ret, i) in enumerate(raw, 1):
        kind.append(is_ret)
        opi.append(i)
        if is_ret:
            match[call_entry[i]] = e
        else:
            call_entry[i] = e
    nxt = [*range(1, m + 1), _NIL]
    prv = list(range(-1, m))
    remaining = m // 2

    # Optional ops have no return, so they never bound the frontier: they live in a list
    # of their own, in call order (slot 0 is its head), and one is callable when it was
    # called no later than the frontier's first return. prev_same[i]: the previous op of
    # i's symmetry class in that order.
    opt = [_NIL, *sorted((i for i in range(n) if optional[i]), key=lambda i: call[i])]
    k_opt = len(opt) - 1
    onxt = [*range(1, k_opt + 1), _NIL]
    oprv = list(range(-1, k_opt))
    prev_same = [_NIL] * n
    last_of: dict[Any, int] = {}
    for i in opt[1:]:
        key = (inp[i], out[i])
        prev_same[i] = last_of.get(key, _NIL)
        last_of[key] = i

    state = init
    lin = 0
    # Frames: (list entry, or slot in the optional list when `late`; the state before;
    # forced by phase 1; late; the frontier's first return entry).
    stack: list[tuple[int, Any, bool, bool, int]] = []
    Key = tuple[int, Any] | tuple[int, Any, bool]
    cache: set[Key] = set()
    k: Key
    cmask = 0
    for i in range(n):
        if not optional[i]:
            cmask |= 1 << i
    # (completed ops placed, state) -> the optional ops placed by a node found to fail.
    failed: dict[tuple[int, Any], int] = {}
    best_rank = -1
    best_order: list[int] = []
    best_blocked: int | None = None
    nodes = 0

    def finish(verdict: Verdict, order: list[int], blocked: int | None) -> SearchResult:
        return SearchResult(
            verdict=verdict,
            order=order,
            blocked=blocked,
            blocked_at=(ret[blocked] if blocked is not None else None),
            nodes=nodes,
            memo=len(cache),
            elapsed=time.perf_counter() - t0,
        )

    # Both prunings' tables are built when an optional op is first tried: most searches
    # never try one, and on a small history building them was a fifth of the check.
    seen_by: list[Callable[[Any], int]] = []

    def _observed(st: Any, placed: int) -> bool:
        # Could some unplaced op still observe `st` (see `observers`)?
        if not seen_by:
            assert observers is not None
            seen_by.append(observers(inp, out))
        return bool(seen_by[0](st) & ~placed)

    def order_of(frames: list[tuple[int, Any, bool, bool, int]]) -> list[int]:
        return [opt[f[0]] if f[3] else opi[f[0]] for f in frames]

    if remaining == 0:
        return finish(LINEARIZABLE, [], None)

    node_start = True
    late = False
    bound = _NIL
    entry = nxt[_HEAD]
    while True:
        if node_start:
            node_start = False
            nodes += 1
            if not nodes & 0x3FF and (
                (deadline is not None and time.monotonic() > deadline)
                or (max_nodes is not None and nodes > max_nodes)
            ):
                best_order = best_order or order_of(stack)
                return finish(UNKNOWN_VERDICT, best_order, best_blocked)
            if len(cache) > max_memo:
                # Forgetting memo entries is sound (they only prune); it bounds memory.
                cache.clear()
                failed.clear()
            # Phase 1: a fitting read-only op decides this node on its own.
            e = nxt[_HEAD]
            forced = _NIL
            while kind[e] == 0:  # the list never runs out before its last return
                i = opi[e]
                if ro[i]:
                    if step(state, inp[i], out[i])[0]:
                        forced = e
                        break
                    if viable is not None and not viable(state, out[i]):
                        forced = _DEAD
                        break
                e = nxt[e]
            late = False
            if forced == _DEAD:
                entry, late, bound = _NIL, True, _NIL  # a pending read can never fit again
                k_try = _NIL
            elif forced != _NIL:
                i = opi[forced]
                nl = lin | (1 << i)
                k = (nl, state)
                if k not in cache and not (
                    failed and (t := failed.get((nl & cmask, state))) is not None and not t & ~nl
                ):
                    cache.add(k)
                    stack.append((forced, state, True, False, _NIL))
                    lin = nl
                    p, q = prv[forced], nxt[forced]
                    nxt[p] = q
                    prv[q] = p
                    r = match[forced]
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    if q != _NIL:
                        prv[q] = p
                    remaining -= 1
                    if remaining == 0:
                        return finish(LINEARIZABLE, order_of(stack), None)
                    node_start = True
                    continue
                entry, late, bound = _NIL, True, _NIL  # its child failed: so does this node
                k_try = _NIL
            else:
                entry = nxt[_HEAD]
        if not late:
            # Completed ops first. After an optional op, only one that looks at its state.
            after_opt = restricting and bool(stack) and stack[-1][3]
            while kind[entry] == 0:
                i = opi[entry]
                if ro[i] or (after_opt and deaf[i]):
                    entry = nxt[entry]
                    continue
                ok, ns = step(state, inp[i], out[i])
                if ok:
                    nl = lin | (1 << i)
                    k = (nl, ns)
                    if k not in cache and not (
                        failed and (t := failed.get((nl & cmask, ns))) is not None and not t & ~nl
                    ):
                        break
                entry = nxt[entry]
            if kind[entry] == 0:
                cache.add(k)
                stack.append((entry, state, False, False, _NIL))
                lin = nl
                state = ns
                p, q = prv[entry], nxt[entry]
                nxt[p] = q
                prv[q] = p
                r = match[entry]
                p, q = prv[r], nxt[r]
                nxt[p] = q
                if q != _NIL:
                    prv[q] = p
                remaining -= 1
                if remaining == 0:
                    return finish(LINEARIZABLE, order_of(stack), None)
                node_start = True
                continue
            # Then the optional ops called before the frontier's first return: a witness
            # rarely needs one, so trying them last finds it sooner (the order is free).
            late = True
            bound = entry
            k_try = onxt[0]
        if k_try != _NIL:
            limit = ret[opi[bound]]
            after_opt = restricting and bool(stack) and stack[-1][3]
            while k_try != _NIL:
                i = opt[k_try]
                if call[i] > limit:  # type: ignore[operator]  # bound is a return entry
                    k_try = _NIL
                    break
                ps = prev_same[i]
                if (ps == _NIL or lin & (1 << ps)) and not (after_opt and deaf[i]):
                    ok, ns = step(state, inp[i], out[i])
                    if ok and ns != state and (observers is None or _observed(ns, lin)):
                        nl = lin | (1 << i)
                        # A node an optional op made explores less (see the rules): its
                        # own memo key, and one an unrestricted visit also covers.
                        k = (nl, ns, True) if restricting else (nl, ns)
                        if (
                            (nl, ns) not in cache
                            and k not in cache
                            and not (
                                failed
                                and (t := failed.get((nl & cmask, ns))) is not None
                                and not t & ~nl
                            )
                        ):
                            break
                k_try = onxt[k_try]
            if k_try != _NIL:
                if restricting and not deaf:
                    assert blind is not None
                    deaf = [blind(a) for a in inp]
                cache.add(k)
                stack.append((k_try, state, False, True, bound))
                lin = nl
                state = ns
                p, q = oprv[k_try], onxt[k_try]
                onxt[p] = q
                if q != _NIL:
                    oprv[q] = p
                node_start = True
                continue
        # Blocked: the first remaining return cannot be reached from here.
        if bound != _NIL and bound > best_rank:
            best_rank = bound
            best_order = order_of(stack)
            best_blocked = opi[bound]
        while True:
            if k_opt and not (restricting and stack and stack[-1][3]):
                d = (lin & cmask, state)
                o = lin & ~cmask
                t = failed.get(d)
                if t is None or o.bit_count() < t.bit_count():
                    failed[d] = o
            if not stack:
                return finish(NOT_LINEARIZABLE, best_order, best_blocked)
            e, state, forced_frame, late, bound = stack.pop()
            if late:
                i = opt[e]
                lin ^= 1 << i
                onxt[oprv[e]] = e
                if onxt[e] != _NIL:
                    oprv[onxt[e]] = e
                k_try = onxt[e]
                break
            i = opi[e]
            lin ^= 1 << i
            r = match[e]
            nxt[prv[r]] = r
            if nxt[r] != _NIL:
                prv[nxt[r]] = r
            remaining += 1
            nxt[prv[e]] = e
            prv[nxt[e]] = e
            if not forced_frame:
                entry = nxt[e]
                break
