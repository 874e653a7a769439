"""Unexpected values: reads that return a value no write could have produced.

Rules (per key, for register-like histories: read/get, write/put, cas, delete):
- A write *could have produced* value v for a read R when it writes v (write/put: its
  value; cas: its new value; delete: nil), did not definitely fail (status ``ok``, or
  ``info``/no completion: its outcome is unknown, so it may have taken effect) and was
  invoked before R completed. A cas that completed ``ok`` with output false wrote
  nothing. Order is the history's event order (as for the linearizability check), so no
  ``time`` fields are needed.
- The initial value (nil; in get/put histories nil or "", as the kv model has it) needs
  no write.
- An ``ok`` read of any other value is *unexpected* (Jepsen's "unexpected value"; when
  the value's only writes definitely failed, Adya's aborted read, G1a). No consistency
  model allows it, eventual included, because it is not a question of when a write
  became visible but of a write that never happened. Each one is classified:
  ``failed-write`` (a write of v definitely failed, and none that may have happened
  was invoked before R completed), ``future-write`` (v was written only by writes
  invoked after R completed) or ``never-written`` (nothing wrote v to this key).
- Keys with any other op (``append``, Jepsen's set ``add``, ...) are skipped: a read
  there returns a combination of writes (a concatenation, a collection), which this
  value-by-value rule cannot judge.
- A set workload that writes every element to a fresh key once (the harness's ``set``)
  is a register per key, so the same rule says that a read returns only elements whose
  add could have happened.
Complexity: one pass over the operations plus, per unexpected read, its value's writes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from kvstore.checker.history import History, Operation
from kvstore.checker.result import op_json

_READ_FS = frozenset({"read", "get"})
_REGISTER_FS = _READ_FS | {"write", "put", "cas", "delete"}


@dataclass(frozen=True, slots=True)
class UnexpectedRead:
    read: Operation
    index: int | None  # the `index` of the read's completion event (the one with the value)
    kind: str  # "failed-write", "future-write" or "never-written"
    writes: tuple[Operation, ...]  # the writes of this value to this key, if any

    def describe(self) -> str:
        where = f"index {self.index}" if self.index is not None else f"op {self.read.id}"
        if self.read.line is not None:
            where += f", line {self.read.line}"
        text = f"{self.read.describe()} ({where}): {self.kind}"
        if self.writes:
            text += " by " + "; ".join(w.describe() for w in self.writes[:3])
        return text

    def to_json(self) -> dict[str, Any]:
        read = op_json(self.read)
        return {
            "kind": self.kind,
            "process": read["process"],
            "index": self.index,
            "line": self.read.line,
            "key": read["key"],
            "value": read["output"],
            "read": read,
            "writes": [op_json(w) for w in self.writes[:10]],
            "text": self.describe(),
        }


def _written(op: Operation) -> tuple[bool, Any]:
    """(writes something, the value) for a non-read op."""
    if op.f == "delete":
        return True, None
    if op.f == "cas":
        if op.status == "ok" and op.output is False:
            return False, None
        if not (type(op.input) is tuple and len(op.input) == 2):  # not a FrozenMap
            return False, None
        return True, op.input[1]
    return True, op.input


def find_unexpected_reads(history: History | Sequence[Operation]) -> list[UnexpectedRead]:
    """Every ok read of a value no write could have produced, in history order."""
    if isinstance(history, History):
        ops = history.operations()
        events = history.events
    else:
        ops, events = list(history), []
    by_key: dict[Hashable, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    out: list[UnexpectedRead] = []
    for key_ops in by_key.values():
        if any(o.f not in _REGISTER_FS for o in key_ops):
            continue
        initial: tuple[Any, ...] = (
            (None, "") if any(o.f in ("get", "put") for o in key_ops) else (None,)
        )
        # value -> the earliest invocation of a write of it that may have happened
        first_possible: dict[Any, int] = {}
        writes_of: dict[Any, list[Operation]] = {}
        for op in key_ops:
            if op.f in _READ_FS:
                continue
            wrote, value = _written(op)
            if not wrote:
                continue
            writes_of.setdefault(value, []).append(op)
            if op.status != "fail" and value not in first_possible:
                first_possible[value] = op.call  # ops are sorted by call
        for r in key_ops:
            if r.f not in _READ_FS or r.status != "ok" or r.output in initial:
                continue
            first = first_possible.get(r.output)
            # r.ret is set for an ok op; a write invoked after it cannot explain it
            if first is not None and r.ret is not None and first < r.ret:
                continue
            writes = writes_of.get(r.output, [])
            if any(w.status == "fail" for w in writes):
                kind = "failed-write"
            elif writes:
                kind = "future-write"
            else:
                kind = "never-written"
            pos = r.ret if r.ret is not None else r.call
            index = events[pos].index if pos < len(events) else None
            out.append(UnexpectedRead(r, index if index is not None else pos, kind, tuple(writes)))
    out.sort(key=lambda u: u.read.call)
    return out
