"""Counterexample windows of register histories are small, proven failures and 1-minimal.

"Fails on its own" and "freeing an op" are the checker's own notions (see explain.py): the
window's ops are kept as recorded, every other op of the key becomes indeterminate (may
take effect any time after its invocation, or never; reads are dropped), and the search
must still find no linearisation. 1-minimal: freeing any one window op makes it pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstore.checker import check_operations
from kvstore.checker.explain import _fails
from kvstore.checker.history import Operation
from kvstore.checker.models import REGISTER, Model
from kvstore.checker.result import Counterexample
from kvstore.checker.search import LINEARIZABLE, NOT_LINEARIZABLE, UNKNOWN_VERDICT, Call


class _Builder:
    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.t = 0

    def op(self, f: str, inp: Any, out: Any, span: int = 1, start: int | None = None) -> None:
        call = self.t if start is None else start
        ret = call + span
        self.t = max(self.t, ret + 1)
        i = len(self.ops)
        self.ops.append(Operation(i, i % 5, f, None, inp, out, "ok", call, ret, line=i + 1))

    def noise(self, n: int, base: int) -> int:
        """n sequential write/read pairs of fresh values; returns the last value."""
        v = base
        for k in range(n):
            v = base + k
            self.op("write", v, None)
            self.op("read", None, v)
        return v


def window_verdict(model: Model, ops: Sequence[Operation], window: set[int]) -> str:
    """The checker's own probe: window ops as recorded, every other op freed."""
    kept = [op for op in ops if model.encode(op) is not None]
    calls: list[Call] = []
    for op in kept:
        enc = model.encode(op)
        assert enc is not None
        ret = float(op.ret) if op.ret is not None else None
        calls.append(Call(float(op.call), ret, enc[0], enc[1]))
    fixed = [i for i, op in enumerate(kept) if op.id in window]
    freed = [i for i, op in enumerate(kept) if op.id not in window]
    deadline = time.monotonic() + 30
    v = _fails(calls, fixed, freed, model.init(), model.step, model.is_readonly, deadline, 10**7)
    assert v != UNKNOWN_VERDICT
    return v


def assert_minimal_failure(model: Model, ops: Sequence[Operation], ce: Counterexample) -> None:
    ids = {o.id for o in ce.window}
    assert window_verdict(model, ops, ids) == NOT_LINEARIZABLE
    assert ce.window_minimal
    for i in ids:
        assert window_verdict(model, ops, ids - {i}) == LINEARIZABLE, i


def _check(ops: Sequence[Operation]) -> tuple[Counterexample, float]:
    t0 = time.monotonic()
    res = check_operations(ops, REGISTER, keep_going_s=0.0)
    took = time.monotonic() - t0
    assert res.verdict == NOT_LINEARIZABLE
    (ce,) = res.counterexamples
    return ce, took


def test_stale_read_in_noise() -> None:
    b = _Builder()
    last = b.noise(150, 1000)
    b.op("write", 7, None)
    b.op("read", None, last)  # stale: the write of 7 completed before it began
    b.noise(150, 5000)
    ce, took = _check(b.ops)
    assert 2 <= len(ce.window) <= 4
    assert_minimal_failure(REGISTER, b.ops, ce)
    assert took < 2.5
    assert ce.summary is not None
    assert f"read returned {last}" in ce.summary
    assert "write of 7 completed before the read began" in ce.summary
    assert all(o.line is not None for o in ce.window)


def test_new_then_old_in_noise() -> None:
    b = _Builder()
    b.noise(150, 1000)
    b.op("write", 1, None)
    b.op("write", 2, None)
    # A slow write of 3 overlaps both reads: the reads can see 2 or 3, but not 2 after 3.
    start = b.t
    b.op("write", 3, None, span=10, start=start)
    b.op("read", None, 3, start=start + 1)
    b.op("read", None, 2, start=start + 3)
    b.noise(150, 5000)
    ce, _ = _check(b.ops)
    assert 2 <= len(ce.window) <= 4
    assert_minimal_failure(REGISTER, b.ops, ce)
    assert ce.summary is not None
    assert "read returned 2 after a read that finished earlier had already returned 3" in (
        ce.summary
    )


def test_json_has_minimal_summary_and_no_null_lines() -> None:
    b = _Builder()
    b.op("write", 1, None)
    b.op("read", None, None)
    res = check_operations(b.ops, REGISTER)
    (ce,) = res.counterexamples
    d = ce.to_json()
    assert d["minimal"] is True
    assert isinstance(d["summary"], str)
    nolines = [
        Operation(o.id, o.process, o.f, o.key, o.input, o.output, o.status, o.call, o.ret)
        for o in b.ops
    ]
    d2 = check_operations(nolines, REGISTER).counterexamples[0].to_json()
    assert all("line" not in o for o in d2["window"])
    assert "line" not in d2["blocked"]


@st.composite
def histories(draw: st.DrawFn) -> list[Operation]:
    n = draw(st.integers(2, 8))
    ops: list[Operation] = []
    for i in range(n):
        call = draw(st.integers(0, 30))
        span = draw(st.integers(1, 8))
        if draw(st.booleans()):
            f, inp, out = "write", draw(st.integers(0, 3)), None
        else:
            f, inp, out = "read", None, draw(st.sampled_from([None, 0, 1, 2, 3]))
        # Distinct event positions: calls even, returns odd.
        ops.append(Operation(i, i, f, None, inp, out, "ok", 2 * call, 2 * (call + span) + 1))
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(histories())
def test_random_failing_windows_are_one_minimal(ops: list[Operation]) -> None:
    res = check_operations(ops, REGISTER)
    if res.verdict != NOT_LINEARIZABLE:
        return
    (ce,) = res.counterexamples
    assert_minimal_failure(REGISTER, ops, ce)
