"""Checking a whole history: encode, partition, search each partition, explain failures.

Rules and invariants:
- Ops are encoded by the model (fail -> dropped; unknown reads -> dropped; no completion
  -> optional with output UNKNOWN) and split by `model.partition`; each partition is
  searched on its own from `model.init()` (P-compositionality).
- Real-time order is the order of events in the history (an op's call/return positions).
- `check_history` resolves a register model's "auto" nil-read rule from the history
  (Knossos's rule for EDN histories; see models.py); `check_operations` has no history,
  so "auto" is "value" there.
- One deadline covers the whole check; partitions not finished by it are "unknown".
  Explaining a failure has its own small budget and never changes a verdict.
- Once a partition fails the overall verdict is known; the others then get only
  `keep_going_s` more seconds (None: check them all fully), and unfinished ones are
  "unknown". Porcupine likewise stops at the first failing partition.
- Partitions are checked smallest first so that a time limit leaves as many decided
  verdicts as possible.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any

from kvstore.checker.explain import describe_window, failing_window
from kvstore.checker.history import History, Operation
from kvstore.checker.models import Model, get_model, infer_model, with_nil_read
from kvstore.checker.result import CheckResult, Counterexample, LinearizedStep, PartitionResult
from kvstore.checker.search import (
    LINEARIZABLE,
    NOT_LINEARIZABLE,
    UNKNOWN_VERDICT,
    Call,
    Verdict,
    linearize,
    linearize_columns,
)


def _steps(
    model: Model,
    ops: Sequence[Operation],
    inp: Sequence[Any],
    out: Sequence[Any],
    order: Sequence[int],
) -> list[LinearizedStep]:
    """Replay a witness's order through the model, pairing each op with its states."""
    steps: list[LinearizedStep] = []
    before = model.init()
    step = model.step
    for i in order:
        _, after = step(before, inp[i], out[i])
        steps.append(LinearizedStep(ops[i], before, after))
        before = after
    return steps


def check_partition(
    model: Model,
    key: Hashable,
    ops: Sequence[Operation],
    *,
    deadline: float | None = None,
    explain: bool = True,
    explain_budget_s: float = 2.0,
) -> PartitionResult:
    """Check the ops of one partition (already split by key)."""
    kept: list[Operation] = []
    # The search's columns. Positions are ints: they order as the floats a Call holds.
    call: list[float] = []
    ret: list[float | None] = []
    inp: list[Any] = []
    out: list[Any] = []
    encode = model.encode
    for op in ops:
        enc = encode(op)
        if enc is not None:
            kept.append(op)
            call.append(op.call)
            ret.append(op.ret)
            inp.append(enc[0])
            out.append(enc[1])
    init = model.init()
    viable = model.viability(inp)
    res = linearize_columns(
        call,
        ret,
        inp,
        out,
        init,
        model.step,
        model.is_readonly,
        deadline=deadline,
        viable=viable,
        observers=model.observers,
        blind=model.blind,
    )
    pr = PartitionResult(
        key=key,
        verdict=res.verdict,
        ops=list(ops),
        checked=len(kept),
        nodes=res.nodes,
        elapsed=res.elapsed,
        witness=lambda: _steps(model, kept, inp, out, res.order),
    )
    if res.verdict != NOT_LINEARIZABLE:
        return pr
    calls = [Call(*c) for c in zip(call, ret, inp, out, strict=True)] if explain else []
    if viable is not None and explain:
        # Look-ahead pruning can stop short of the true blocking point; redo the search
        # without it (within the explanation budget) so the prefix is the longest.
        budget = time.monotonic() + explain_budget_s
        exact = linearize(
            calls,
            init,
            model.step,
            model.is_readonly,
            deadline=budget if deadline is None else min(deadline, budget),
            observers=model.observers,
            blind=model.blind,
        )
        if exact.verdict == NOT_LINEARIZABLE:
            res.order, res.blocked = exact.order, exact.blocked
    if res.blocked is not None:
        if explain:
            window, minimal = failing_window(
                calls,
                res.blocked,
                init,
                model.step,
                model.is_readonly,
                explain_budget_s,
                viability=model.viability,
                observers=model.observers,
                blind=model.blind,
            )
        else:
            window, minimal = [res.blocked], False
        window_ops = sorted((kept[i] for i in window), key=lambda o: o.call)
        pr.counterexample = Counterexample(
            key=key,
            blocked=kept[res.blocked],
            window=window_ops,
            window_minimal=minimal,
            summary=describe_window(window_ops) if minimal and model.nil_read is not None else None,
            witness=lambda: pr.steps,
            initial=init,
        )
    return pr


def partition_ops(model: Model, ops: Sequence[Operation]) -> dict[Hashable, list[Operation]]:
    key = model.partition
    if key is None:
        return {None: list(ops)}
    parts: dict[Hashable, list[Operation]] = {}
    for op in ops:
        k = key(op)
        part = parts.get(k)
        if part is None:
            parts[k] = [op]
        else:
            part.append(op)
    return parts


class StopRule:
    """One deadline for a whole check (module rules): `time_limit` from the start, and
    `keep_going_s` more once the first partition fails (None: no such limit)."""

    def __init__(self, time_limit: float | None, keep_going_s: float | None) -> None:
        self.deadline = time.monotonic() + time_limit if time_limit is not None else None
        self.keep_going_s = keep_going_s

    def passed(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def saw(self, verdict: Verdict) -> None:
        if verdict == NOT_LINEARIZABLE and self.keep_going_s is not None:
            after = time.monotonic() + self.keep_going_s
            self.deadline = after if self.deadline is None else min(self.deadline, after)
            self.keep_going_s = None  # only the first failure shortens the deadline


def check_partitions(
    model: Model,
    parts: Iterable[tuple[Hashable, list[Operation]]],
    stop: StopRule,
    *,
    explain: bool,
    explain_budget_s: float,
) -> Iterator[PartitionResult]:
    """Check partitions in the order given under one stop rule; those the deadline
    reaches first are "unknown" with nothing checked (nodes 0)."""
    for key, part in parts:
        if stop.passed():
            yield PartitionResult(key, UNKNOWN_VERDICT, part, 0)
            continue
        pr = check_partition(
            model,
            key,
            part,
            deadline=stop.deadline,
            explain=explain,
            explain_budget_s=explain_budget_s,
        )
        stop.saw(pr.verdict)
        yield pr


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    if NOT_LINEARIZABLE in verdicts:
        return NOT_LINEARIZABLE
    if UNKNOWN_VERDICT in verdicts:
        return UNKNOWN_VERDICT
    return LINEARIZABLE


def check_operations(
    ops: Sequence[Operation],
    model: Model | str | None = None,
    *,
    time_limit: float | None = None,
    explain: bool = True,
    explain_budget_s: float = 2.0,
    keep_going_s: float | None = 1.0,
) -> CheckResult:
    """Check operations; `keep_going_s` bounds the time spent on the remaining partitions
    once one has failed (the verdict is then known); None checks every partition fully."""
    t0 = time.perf_counter()
    if model is None:
        model = infer_model(ops)
    elif isinstance(model, str):
        model = get_model(model)
    parts = partition_ops(model, ops)
    results = list(
        check_partitions(
            model,
            sorted(parts.items(), key=lambda kv: (len(kv[1]), repr(kv[0]))),
            StopRule(time_limit, keep_going_s),
            explain=explain,
            explain_budget_s=explain_budget_s,
        )
    )
    results.sort(key=lambda p: repr(p.key))
    return CheckResult(
        verdict=combine([p.verdict for p in results]),
        model=model.name,
        partitions=results,
        ops=len(ops),
        elapsed=time.perf_counter() - t0,
    )


def check_history(
    history: History,
    model: Model | str | None = None,
    *,
    time_limit: float | None = None,
    explain: bool = True,
    explain_budget_s: float = 2.0,
    keep_going_s: float | None = 1.0,
) -> CheckResult:
    """Check a loaded history. `model`: a Model, a name in MODELS, or None to infer."""
    ops = history.operations()
    if model is None:
        model = infer_model(ops)
    elif isinstance(model, str):
        model = get_model(model)
    res = check_operations(
        ops,
        with_nil_read(model, history.nil_read_is_unknown),
        time_limit=time_limit,
        explain=explain,
        explain_budget_s=explain_budget_s,
        keep_going_s=keep_going_s,
    )
    res.source = history.source
    res.format = history.format
    return res


def check_file(
    path: str, model: Model | str | None = None, fmt: str = "auto", **kwargs: Any
) -> CheckResult:
    from kvstore.checker.formats import load_history

    return check_history(load_history(path, fmt), model, **kwargs)
