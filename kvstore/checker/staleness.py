"""Staleness analyses for register-like histories (read/get, write/put, cas, delete) with
times.

Definitions (per key; `a < b` means op a completed before op b was invoked, by `time`):
- Writes: ok write/put (value = its input), ok cas (value = its new value), ok delete
  (value = nil: what a read after it returns; deletes share that value, so a read of nil
  gets the benefit of the doubt below like any repeated value). A write with no
  completion (info) may be a read's source but has completion +infinity. Reads: ok
  read/get. The initial value (nil; for get/put histories nil or ""; or the one given,
  as `kvstore check --initial` gives it) is version 0, older than every write. Under
  Knossos's nil rule (`nil_read_unknown`) a read of nil says nothing about the state, so
  it is left out of every figure.
- Source of a read R of value v: among writes of v invoked before R completed, the one that
  completed last (the benefit of the doubt when values repeat); the initial value if none
  and v is initial. Otherwise R is *unexplained* and left out of every figure below.
- R misses W when source(R) < W ("definitely older": it completed before W began).
- Stale read: R misses some ok write W with W < R. k-staleness of R = the number of such
  writes (0 = fresh); reported as a distribution.
- t-visibility of an ok write W: the longest time, after W completed, at which a read
  began that still missed W (0 if none did). Only for writes with a read after them and
  not lost; reported as a distribution (ns) with percentiles.
- Lost write: an ok write that no read ever returned, while some read begun after it
  completed missed it (returned an older value): it lost, e.g. to an older write with a
  higher timestamp. Later writes superseding it do not make it less lost.
- Monotonic-read violation: a process reads R1 then R2 (R1 < R2) with source(R2) <
  source(R1). Read-your-writes violation: a process completes write W, later reads R
  (W < R) and R misses W. Both per process, each read counted once.
Complexity: O(n log n) per key (sorting, bisection, Fenwick counts), so large histories
are fine.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvstore.checker.history import History, HistoryFormatError, Operation
from kvstore.checker.result import op_json

_NEG = -math.inf
_POS = math.inf
_READ_FS = frozenset({"read", "get"})
_WRITE_FS = frozenset({"write", "put", "delete"})


@dataclass(frozen=True, slots=True)
class _Write:
    op: Operation | None  # None: the initial value
    value: Any
    call: float
    ret: float


@dataclass(frozen=True, slots=True)
class StaleRead:
    read: Operation
    source: Operation | None  # None: the initial value
    newest_missed: Operation
    versions_behind: int


@dataclass(frozen=True, slots=True)
class SessionViolation:
    process: Hashable
    earlier: Operation  # the earlier read (monotonic reads) or write (read-your-writes)
    read: Operation
    source: Operation | None


@dataclass(slots=True)
class StalenessReport:
    reads: int = 0
    writes: int = 0
    stale_reads: list[StaleRead] = field(default_factory=list)
    k_staleness: Counter[int] = field(default_factory=Counter)
    t_visibility_ns: list[float] = field(default_factory=list)
    lost_writes: list[Operation] = field(default_factory=list)
    monotonic_read_violations: list[SessionViolation] = field(default_factory=list)
    read_your_writes_violations: list[SessionViolation] = field(default_factory=list)
    unexplained_reads: list[Operation] = field(default_factory=list)

    def t_visibility_percentiles_ms(self) -> dict[str, float]:
        return {
            name: percentile(self.t_visibility_ns, q) / 1e6
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100))
            if self.t_visibility_ns
        }

    def per_process(self, violations: Iterable[SessionViolation]) -> dict[str, int]:
        c: Counter[str] = Counter(str(v.process) for v in violations)
        return dict(sorted(c.items()))

    def to_json(self, examples: int = 10) -> dict[str, Any]:
        def sv(v: SessionViolation) -> dict[str, Any]:
            return {
                "process": str(v.process),
                "earlier": op_json(v.earlier),
                "read": op_json(v.read),
            }

        return {
            "reads": self.reads,
            "writes": self.writes,
            "stale_reads": len(self.stale_reads),
            "stale_read_examples": [
                {
                    "read": op_json(s.read),
                    "versions_behind": s.versions_behind,
                    "newest_missed": op_json(s.newest_missed),
                }
                for s in self.stale_reads[:examples]
            ],
            "k_staleness": {str(k): v for k, v in sorted(self.k_staleness.items())},
            "t_visibility_ms": self.t_visibility_percentiles_ms(),
            "t_visibility_writes": len(self.t_visibility_ns),
            "lost_writes": len(self.lost_writes),
            "lost_write_examples": [op_json(o) for o in self.lost_writes[:examples]],
            "monotonic_read_violations": self.per_process(self.monotonic_read_violations),
            "monotonic_read_examples": [sv(v) for v in self.monotonic_read_violations[:examples]],
            "read_your_writes_violations": self.per_process(self.read_your_writes_violations),
            "read_your_writes_examples": [
                sv(v) for v in self.read_your_writes_violations[:examples]
            ],
            "unexplained_reads": len(self.unexplained_reads),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[min(rank, len(s)) - 1]


class _Fenwick:
    def __init__(self, n: int) -> None:
        self.t = [0] * (n + 1)

    def add(self, i: int) -> None:
        i += 1
        while i < len(self.t):
            self.t[i] += 1
            i += i & -i

    def prefix(self, i: int) -> int:
        """Count of added indices < i."""
        s = 0
        while i > 0:
            s += self.t[i]
            i -= i & -i
        return s


def _t(v: int | None, default: float) -> float:
    return float(v) if v is not None else default


_NO_INITIAL: Any = object()


def analyse_staleness(
    history: History | Sequence[Operation],
    *,
    initial: Any = _NO_INITIAL,
    nil_read_unknown: bool | None = None,
) -> StalenessReport:
    """All staleness figures for a history. ``initial``: the register's first value
    (default: nil, or nil and "" for get/put histories); ``nil_read_unknown``: Knossos's
    rule for reads of nil (default: the history's own, False for plain operations).

    Raises HistoryFormatError (a ValueError) at the first op that lacks a time.
    """
    if nil_read_unknown is None:
        nil_read_unknown = isinstance(history, History) and history.nil_read_is_unknown
    ops = history.operations() if isinstance(history, History) else list(history)
    report = StalenessReport()
    by_key: dict[Hashable, list[Operation]] = {}
    for op in ops:
        if op.f in _READ_FS or op.f in _WRITE_FS or op.f == "cas":
            if op.call_time is None or (op.ret is not None and op.ret_time is None):
                raise HistoryFormatError(op.line, "time fields for the staleness analyses")
            if nil_read_unknown and op.f in _READ_FS and op.output is None:
                continue  # Knossos's rule: this read's value is unknown
            by_key.setdefault(op.key, []).append(op)
    for key_ops in by_key.values():
        _analyse_key(key_ops, report, initial)
    return report


def _analyse_key(ops: list[Operation], rep: StalenessReport, initial: Any) -> None:
    init_values: tuple[Any, ...]
    if initial is not _NO_INITIAL:
        init_values = (initial,)
    else:
        init_values = (None, "") if any(o.f in ("get", "put") for o in ops) else (None,)
    init = _Write(None, None, _NEG, _NEG)
    writes: list[_Write] = []
    reads: list[Operation] = []
    for op in ops:
        if op.f in _READ_FS:
            if op.status == "ok":
                reads.append(op)
            continue
        if op.status == "fail":
            continue
        if op.f == "cas":
            if op.status == "ok" and op.output is False:
                continue
            if not (type(op.input) is tuple and len(op.input) == 2):  # not a FrozenMap
                continue
            value = op.input[1]
        elif op.f == "delete":
            value = None
        else:
            value = op.input
        ret = _t(op.ret_time, _POS) if op.status == "ok" else _POS
        writes.append(_Write(op, value, float(op.call_time or 0), ret))
    acked = sorted((w for w in writes if w.ret != _POS), key=lambda w: w.ret)
    rep.writes += len(acked)
    rep.reads += len(reads)

    by_value: dict[Any, list[_Write]] = {}
    for w in writes:
        by_value.setdefault(w.value, []).append(w)

    # Source of each read.
    sourced: list[tuple[Operation, _Write]] = []
    for r in reads:
        r_ret = _t(r.ret_time, _POS)
        cands = [w for w in by_value.get(r.output, ()) if w.call < r_ret]
        if cands:
            src = max(cands, key=lambda w: w.ret)
        elif r.output in init_values:
            src = init
        else:
            rep.unexplained_reads.append(r)
            continue
        sourced.append((r, src))

    # k-staleness: writes W with src.ret < W.call and W.ret < R.call, counted offline.
    ack_rets = [w.ret for w in acked]
    by_call = sorted(range(len(acked)), key=lambda i: acked[i].call)
    fw = _Fenwick(len(acked))
    queries = sorted(range(len(sourced)), key=lambda q: sourced[q][1].ret)
    j = 0
    for q in queries:
        r, src = sourced[q]
        r_call = float(r.call_time or 0)
        while j < len(by_call) and acked[by_call[j]].call <= src.ret:
            fw.add(by_call[j])
            j += 1
        finished = bisect.bisect_left(ack_rets, r_call)  # acked writes with ret < R.call
        k = finished - fw.prefix(finished)
        rep.k_staleness[k] += 1
        if k:
            newest = next(acked[i] for i in range(finished - 1, -1, -1) if acked[i].call > src.ret)
            assert newest.op is not None
            rep.stale_reads.append(StaleRead(r, src.op, newest.op, k))

    # t-visibility and lost writes.
    by_src_ret = sorted(sourced, key=lambda rs: rs[1].ret)
    src_rets = [s.ret for _, s in by_src_ret]
    prefix_max_call: list[float] = []
    m = _NEG
    for r, _ in by_src_ret:
        m = max(m, float(r.call_time or 0))
        prefix_max_call.append(m)
    by_read_call = sorted(sourced, key=lambda rs: float(rs[0].call_time or 0))
    read_calls = [float(r.call_time or 0) for r, _ in by_read_call]
    suffix_min_src: list[float] = [_POS] * (len(by_read_call) + 1)
    for i in range(len(by_read_call) - 1, -1, -1):
        suffix_min_src[i] = min(suffix_min_src[i + 1], by_read_call[i][1].ret)
    returned = {id(s.op) for _, s in sourced if s.op is not None}
    for w in acked:
        first_after = bisect.bisect_left(read_calls, w.ret)
        if first_after == len(read_calls):
            continue  # no read after it: nothing observable
        # Never returned, yet a later read returned something older: it lost (e.g. to
        # an older write with a higher timestamp). Later writes superseding it do not
        # make it less lost, so one missing read is enough evidence.
        if id(w.op) not in returned and suffix_min_src[first_after] < w.call:
            assert w.op is not None
            rep.lost_writes.append(w.op)
            continue
        n_older = bisect.bisect_left(src_rets, w.call)  # reads whose source < W
        last_missing = prefix_max_call[n_older - 1] if n_older else _NEG
        rep.t_visibility_ns.append(max(0.0, last_missing - w.ret))

    # Session guarantees, per process in invocation order.
    src_of = {id(r): s for r, s in sourced}
    per_proc: dict[Hashable, list[Operation]] = {}
    for op in ops:
        per_proc.setdefault(op.process, []).append(op)
    for proc, pops in per_proc.items():
        pops.sort(key=lambda o: float(o.call_time or 0))
        best_src: tuple[float, Operation] | None = None  # newest source call among earlier reads
        best_write: tuple[float, Operation] | None = None  # newest own acked write's call
        done_reads: list[tuple[float, float, Operation]] = []  # (ret, src.call, read)
        done_writes: list[tuple[float, float, Operation]] = []
        for op in pops:
            t_call = float(op.call_time or 0)
            # Fold in ops of this process that completed before this one began.
            for lst, is_read in ((done_reads, True), (done_writes, False)):
                keep = []
                for ret, c, o in lst:
                    if ret < t_call:
                        if is_read and (best_src is None or c > best_src[0]):
                            best_src = (c, o)
                        if not is_read and (best_write is None or c > best_write[0]):
                            best_write = (c, o)
                    else:
                        keep.append((ret, c, o))
                lst[:] = keep
            rsrc = src_of.get(id(op))
            if rsrc is not None:
                if best_src is not None and rsrc.ret < best_src[0]:
                    rep.monotonic_read_violations.append(
                        SessionViolation(proc, best_src[1], op, rsrc.op)
                    )
                if best_write is not None and rsrc.ret < best_write[0]:
                    rep.read_your_writes_violations.append(
                        SessionViolation(proc, best_write[1], op, rsrc.op)
                    )
                done_reads.append((_t(op.ret_time, _POS), rsrc.call, op))
            elif op.f not in _READ_FS and op.status == "ok":
                if op.f == "cas" and op.output is False:
                    continue
                done_writes.append((_t(op.ret_time, _POS), t_call, op))
