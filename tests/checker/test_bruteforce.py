"""The search against a brute-force checker (try every order) on small random histories.

The brute force shares nothing with the search: its own sequential semantics for
registers and kv, and plain enumeration of every order that respects real time, with
ops lacking a completion free to be left out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstore.checker import check_operations
from kvstore.checker.history import Event, Operation, pair_operations

REG_VALUES = [None, 0, 1, 2]


def spec_step(model: str, state: Any, op: Operation) -> list[Any]:
    """The states op can leave from `state` (empty: op impossible here)."""
    known = op.status == "ok"
    if model == "kv":
        f, v = op.f, op.input
        if f == "get":
            return [state] if (not known or op.output == state) else []
        if f == "put":
            return [v]
        return [state + v]
    f = op.f
    if f == "read":
        return [state] if (not known or op.output == state) else []
    if f == "write":
        return [op.input]
    a, b = op.input
    if not known:
        return [b if state == a else state]
    if op.output is False:
        return [state] if state != a else []
    return [b] if state == a else []


def brute_force(model: str, ops: Sequence[Operation]) -> bool:
    ops = [o for o in ops if o.status != "fail"]
    required = {o.id for o in ops if o.ret is not None}
    init: Any = "" if model == "kv" else None

    def must_precede(a: Operation, b: Operation) -> bool:
        return a.ret is not None and a.ret < b.call

    def go(placed: list[Operation], state: Any) -> bool:
        ids = {o.id for o in placed}
        if required <= ids:
            return True
        for op in ops:
            if op.id in ids:
                continue
            if any(must_precede(o, op) and o.id not in ids for o in ops):
                continue
            for nxt in spec_step(model, state, op):
                if go([*placed, op], nxt):
                    return True
        return False

    return go([], init)


def random_history(
    rnd: random.Random, model: str, n_ops: int, n_procs: int
) -> tuple[list[Event], bool]:
    """Events from interleaved processes; some completions fail, some are info/missing."""
    events: list[Event] = []
    open_ops: dict[int, Event] = {}
    started = 0
    fail_cas_is_false = model == "cas-register" and rnd.random() < 0.5
    while started < n_ops or (open_ops and rnd.random() < 0.9):
        p = rnd.randrange(n_procs)
        if p in open_ops:
            inv = open_ops.pop(p)
            r = rnd.random()
            typ = "ok" if r < 0.75 else ("info" if r < 0.9 else "fail")
            value = inv.value
            if inv.f in ("read", "get") and typ == "ok":
                value = (
                    rnd.choice(REG_VALUES)
                    if model != "kv"
                    else rnd.choice(["", "a", "b", "ab", "ba", "c"])
                )
            events.append(Event(process=p, type=typ, f=inv.f, value=value))
        elif started < n_ops:
            v: Any
            if model == "kv":
                f = rnd.choice(["get", "put", "append", "append"])
                v = None if f == "get" else rnd.choice(["a", "b", "c"])
            else:
                fs = ["read", "write"] + (["cas"] if model == "cas-register" else [])
                f = rnd.choice(fs)
                if f == "read":
                    v = None
                elif f == "write":
                    v = rnd.choice([0, 1, 2])
                else:
                    v = (rnd.choice(REG_VALUES), rnd.choice([0, 1, 2]))
            ev = Event(process=p, type="invoke", f=f, value=v)
            events.append(ev)
            open_ops[p] = ev
            started += 1
    return events, fail_cas_is_false


def _compare(rnd: random.Random, model: str) -> str:
    n_ops = rnd.randint(1, 6)
    events, fcf = random_history(rnd, model, n_ops, rnd.randint(1, 3))
    ops = pair_operations(events, fail_cas_is_false=fcf)
    expected = brute_force(model, ops)
    result = check_operations(ops, model, explain=False)
    assert result.verdict == ("linearizable" if expected else "not linearizable"), events
    return result.verdict


def test_both_verdicts_are_well_represented() -> None:
    """Seeded sweep: the generator yields both verdicts often, and all agree."""
    rnd = random.Random(20240601)
    seen = {"linearizable": 0, "not linearizable": 0}
    for i in range(1200):
        model = ("register", "cas-register", "kv")[i % 3]
        seen[_compare(rnd, model)] += 1
    assert seen["linearizable"] >= 300
    assert seen["not linearizable"] >= 300


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False), model=st.sampled_from(["register", "cas-register"]))
def test_registers_match_brute_force(rnd: random.Random, model: str) -> None:
    _compare(rnd, model)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False))
def test_kv_matches_brute_force(rnd: random.Random) -> None:
    _compare(rnd, "kv")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False))
def test_multi_key_histories_split_by_key(rnd: random.Random) -> None:
    """Per-key verdicts agree with brute force on each key's own sub-history."""
    streams: list[list[Event]] = []
    for n, key in enumerate(("x", "y")):
        evs, _ = random_history(rnd, "register", rnd.randint(1, 4), 2)
        streams.append(
            [Event(cast(int, e.process) + 10 * n, e.type, e.f, e.value, key=key) for e in evs]
        )
    merged: list[Event] = []
    while any(streams):  # random interleaving that keeps each stream's order
        s = rnd.choice([s for s in streams if s])
        merged.append(s.pop(0))
    ops = pair_operations(merged)
    result = check_operations(ops, "register", explain=False, keep_going_s=None)
    assert {p.key for p in result.partitions} <= {"x", "y"}
    for p in result.partitions:
        expected = brute_force("register", [o for o in ops if o.key == p.key])
        assert p.verdict == ("linearizable" if expected else "not linearizable")


def _freed(ops: Sequence[Operation], fixed_ids: set[int]) -> list[Operation]:
    """Ops outside `fixed_ids` become indeterminate: any time after their call, or never."""
    return [o if o.id in fixed_ids else replace(o, ret=None) for o in ops]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False), model=st.sampled_from(["cas-register", "kv"]))
def test_failing_window_is_a_proven_and_minimal_failure(rnd: random.Random, model: str) -> None:
    events, fcf = random_history(rnd, model, rnd.randint(2, 6), rnd.randint(1, 3))
    ops = pair_operations(events, fail_cas_is_false=fcf)
    result = check_operations(ops, model)
    if result.verdict != "not linearizable":
        return
    (ce,) = result.counterexamples
    window = {o.id for o in ce.window}
    assert ce.blocked.id in window
    assert not brute_force(model, _freed(ops, window))
    if ce.window_minimal:
        for i in window:
            assert brute_force(model, _freed(ops, window - {i}))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False), model=st.sampled_from(["register", "cas-register"]))
def test_the_blind_write_pruning_matches_brute_force_with_many_optional_ops(
    rnd: random.Random, model: str
) -> None:
    """The explanation's probes free most ops; with `blind` the search never places a
    write right after an optional op. Freed ops as probes have them, against brute force."""
    from kvstore.checker.models import get_model
    from kvstore.checker.search import Call, linearize

    events, fcf = random_history(rnd, model, rnd.randint(2, 8), rnd.randint(1, 4))
    ops = [o for o in pair_operations(events, fail_cas_is_false=fcf) if o.status != "fail"]
    ops = _freed(ops, {o.id for o in ops if rnd.random() < 0.4})
    spec = get_model(model)
    calls, kept = [], []
    for op in ops:
        enc = spec.encode(op)
        if enc is not None:  # None: an op the model need not place (a read never answered)
            calls.append(Call(op.call, op.ret, enc[0], enc[1]))
            kept.append(op)
    got = linearize(
        calls,
        spec.init(),
        spec.step,
        spec.is_readonly,
        observers=spec.observers,
        blind=spec.blind,
    )
    expected = brute_force(model, kept)
    assert got.verdict == ("linearizable" if expected else "not linearizable"), kept
