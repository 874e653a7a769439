"""Result objects of a check: verdicts per partition, witnesses and counterexamples.

Rules and invariants:
- The overall verdict is "not linearizable" if any partition is, else "unknown" if any
  partition ran out of time, else "linearizable". It is never a bare bool.
- A LinearizedStep pairs a history Operation with the model state before and after it.
  For a linearizable partition the steps are a full witness; for a failing one they are the
  longest linearizable prefix found.
- `to_json()` gives plain JSON-able data (values via repr where JSON has no form).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kvstore.checker.history import Operation
from kvstore.checker.search import Verdict


def _j(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, tuple | list):
        return [_j(x) for x in v]
    return repr(v)


def op_json(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "process": _j(op.process),
        "f": op.f,
        "key": _j(op.key),
        "value": _j(op.input),
        "output": _j(op.output),
        "status": op.status,
        **({"line": op.line} if op.line is not None else {}),
        "text": op.describe(),
    }


class LinearizedStep(NamedTuple):
    """A tuple, not a dataclass: a check builds one per op of a witness."""

    op: Operation
    state_before: Any
    state_after: Any


@dataclass(slots=True)
class Counterexample:
    """Why a partition is not linearizable.

    `window`: a set of ops that cannot be linearised together even when every other op of
    the partition is indeterminate (took effect any time after its invocation, or never),
    so it explains the violation on its own; `window_minimal` says whether freeing any
    single op of it was shown to make it linearizable (False when the explanation budget
    ran out first).
    `prefix`: the longest linearizable prefix found: every op that completed before
    `blocked`'s completion is in it, in a valid order, ending in `prefix_state`
    (`blocked` is the first op whose completion no linearisation reaches). It is built on
    first use by `witness`; `initial` is the state it starts from.
    """

    key: Hashable
    blocked: Operation
    window: list[Operation]
    window_minimal: bool
    witness: Callable[[], list[LinearizedStep]] = field(repr=False)
    initial: Any
    # One sentence on what went wrong, when the window matches a common anomaly.
    summary: str | None = None

    @property
    def prefix(self) -> list[LinearizedStep]:
        return self.witness()

    @property
    def prefix_state(self) -> Any:
        steps = self.witness()
        return steps[-1].state_after if steps else self.initial

    def to_json(self) -> dict[str, Any]:
        return {
            "key": _j(self.key),
            "blocked": op_json(self.blocked),
            "window": [op_json(o) for o in self.window],
            "window_minimal": self.window_minimal,
            "minimal": self.window_minimal,
            "summary": self.summary,
            "prefix_length": len(self.prefix),
            "prefix_state": _j(self.prefix_state),
            "prefix": [
                {"op": s.op.id, "before": _j(s.state_before), "after": _j(s.state_after)}
                for s in self.prefix
            ],
        }


@dataclass(slots=True)
class PartitionResult:
    """One partition's verdict. `steps` is the witness (see LinearizedStep), built on first
    use from `witness`: a verdict alone never pays for it."""

    key: Hashable
    verdict: Verdict
    ops: list[Operation]
    checked: int
    counterexample: Counterexample | None = None
    nodes: int = 0
    elapsed: float = 0.0
    witness: Callable[[], list[LinearizedStep]] | None = field(default=None, repr=False)
    _steps: list[LinearizedStep] | None = field(default=None, repr=False)

    @property
    def steps(self) -> list[LinearizedStep]:
        if self._steps is None:
            self._steps = self.witness() if self.witness is not None else []
        return self._steps

    def to_json(self, *, with_steps: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "key": _j(self.key),
            "verdict": self.verdict,
            "ops": len(self.ops),
            "checked_ops": self.checked,
            "search_nodes": self.nodes,
            "seconds": round(self.elapsed, 6),
        }
        if self.counterexample is not None:
            d["counterexample"] = self.counterexample.to_json()
        if with_steps:
            d["linearization"] = [s.op.id for s in self.steps]
        return d


@dataclass(slots=True)
class CheckResult:
    verdict: Verdict
    model: str
    partitions: list[PartitionResult]
    ops: int
    elapsed: float
    source: str | None = None
    format: str | None = None

    @property
    def counterexamples(self) -> list[Counterexample]:
        return [p.counterexample for p in self.partitions if p.counterexample is not None]

    def partition(self, key: Hashable) -> PartitionResult:
        for p in self.partitions:
            if p.key == key:
                return p
        raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for p in self.partitions:
            counts[p.verdict] = counts.get(p.verdict, 0) + 1
        return {
            "verdict": self.verdict,
            "model": self.model,
            "source": self.source,
            "format": self.format,
            "ops": self.ops,
            "partitions": len(self.partitions),
            "partition_verdicts": counts,
            "seconds": round(self.elapsed, 6),
            "per_partition": [p.to_json() for p in self.partitions],
        }
