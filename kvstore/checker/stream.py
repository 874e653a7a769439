"""Checking a history too big to hold: parse in chunks, spill ops to buckets, check per key.

Rules and invariants:
- Memory is bounded by one chunk of lines, the open invocations (one per process), and
  one bucket of ops at a time, never by the history: pass 1 reads `chunk_lines` lines at
  a time, pairs invocations with completions exactly as `pair_operations` does (global
  event positions, so real-time order is kept), and appends each finished op to one of
  `buckets` spill files chosen by its key; pass 2 loads one bucket at a time, splits it
  per key and checks each key as `check_operations` would.
- Only line-oriented histories stream: every format but an EDN file that is one vector
  of ops, and an EDN op spread over lines that a chunk boundary cuts. Both are refused
  with a HistoryFormatError (nothing is misread: a cut op cannot parse). So are events
  whose `:index` goes backwards, which the in-memory reader would reorder.
- The key encoding (a `:key` field, Jepsen independent `[k v]` tuples, or none) is
  decided from the first chunk, as `History.key_encoding` decides it from the whole
  file; a later chunk that names keys otherwise is refused, so a streamed verdict is
  never one the in-memory check would not give. The model is inferred from every op's
  `f` at the end of pass 1, as `infer_model` does.
- Results keep, per key, the verdict and counts; the ops of a key are kept only when it
  failed (for the counterexample) or its search was cut short, so a million
  linearizable ops leave nothing behind. Spill files are private (a temporary folder)
  and removed at the end.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
import zlib
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from kvstore.checker.checker import StopRule, check_partitions, combine, partition_ops
from kvstore.checker.formats import parse_history, sniff_format
from kvstore.checker.history import (
    Event,
    HistoryFormatError,
    KeyEncoding,
    Operation,
    detect_key_encoding,
    pair_operations,
)
from kvstore.checker.models import Model, get_model, model_for_fs, with_nil_read
from kvstore.checker.result import CheckResult, PartitionResult
from kvstore.checker.search import NOT_LINEARIZABLE, UNKNOWN_VERDICT

# The fields of an Operation after its id, as spilled (see _spill).
_Row = tuple[Any, ...]


@dataclass
class StreamStats:
    """What a streamed check held and did: the figures its memory bound is about."""

    events: int = 0
    keys: int = 0
    buckets: int = 0
    chunks: int = 0
    spilled_bytes: int = 0
    parse_s: float = 0.0
    check_s: float = 0.0
    # Ops of every bucket, to show the spread the memory bound depends on.
    bucket_ops: list[int] = field(default_factory=list)

    @property
    def ops(self) -> int:
        return sum(self.bucket_ops)

    @property
    def largest_bucket_ops(self) -> int:
        return max(self.bucket_ops, default=0)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "ops": self.ops,
            "keys": self.keys,
            "buckets": self.buckets,
            "chunks": self.chunks,
            "largest_bucket_ops": self.largest_bucket_ops,
            "spilled_bytes": self.spilled_bytes,
            "parse_s": round(self.parse_s, 3),
            "check_s": round(self.check_s, 3),
        }


def _chunks(fp: IO[str], chunk_lines: int) -> Iterator[tuple[int, str]]:
    """(number of the chunk's first line, text) for runs of `chunk_lines` whole lines."""
    first = 1
    lines: list[str] = []
    for raw in fp:
        lines.append(raw)
        if len(lines) >= chunk_lines:
            yield first, "".join(lines)
            first += len(lines)
            lines = []
    if lines:
        yield first, "".join(lines)


def _refuse_vector(first_chunk: str, fmt: str) -> None:
    if (
        fmt == "edn"
        and first_chunk.lstrip()[:1] in ("[", "(")
        and sniff_format(first_chunk) == "edn"
    ):
        raise HistoryFormatError(
            1,
            "one op per line to stream (this EDN file is one vector of ops: check it "
            "without --stream)",
        )


class _Pairer:
    """`pair_operations` over a stream: the same rules, one chunk of events at a time."""

    def __init__(self, fail_cas_is_false: bool, independent: bool) -> None:
        self.fail_cas_is_false = fail_cas_is_false
        self.independent = independent
        self.pos = 0
        self.open: dict[Hashable, tuple[int, Event]] = {}

    def feed(self, events: list[Event], line0: int) -> Iterator[Operation]:
        for ev in events:
            pos = self.pos
            self.pos += 1
            if ev.is_nemesis:
                continue
            ev = _at(ev, line0)
            if ev.type == "invoke":
                prev = self.open.pop(ev.process, None)
                if prev is not None:
                    yield from self._close(prev, None)
                self.open[ev.process] = (pos, ev)
                continue
            opened = self.open.pop(ev.process, None)
            if opened is None:
                raise HistoryFormatError(
                    ev.line, f"an invocation by process {ev.process!r} before this {ev.type}"
                )
            yield from self._close(opened, (pos, ev))

    def _close(self, inv: tuple[int, Event], comp: tuple[int, Event] | None) -> Iterator[Operation]:
        # One pair through the in-memory rules, then moved to the stream's positions.
        events = [inv[1]] if comp is None else [inv[1], comp[1]]
        for op in pair_operations(
            events, fail_cas_is_false=self.fail_cas_is_false, independent=self.independent
        ):
            ret = None if op.ret is None or comp is None else comp[0]
            yield Operation(
                0, op.process, op.f, op.key, op.input, op.output, op.status,
                inv[0], ret, op.call_time, op.ret_time, op.error, op.line,
            )  # fmt: skip

    def finish(self) -> Iterator[Operation]:
        for opened in sorted(self.open.values(), key=lambda o: o[0]):
            yield from self._close(opened, None)
        self.open.clear()


def _in_file_order(events: list[Event], line0: int, last_index: int | None) -> int | None:
    """Refuse events the in-memory reader would reorder; returns the last :index seen.

    The reader sorts a chunk whose events all have an :index out of order, and its lines
    then go backwards; across chunks the :index itself must not go back."""
    last_line = 0
    for ev in events:
        moved = ev.line is not None and ev.line < last_line
        last_line = ev.line if ev.line is not None else last_line
        back = last_index is not None and ev.index is not None and ev.index < last_index
        if moved or back:
            raise HistoryFormatError(
                _at(ev, line0).line,
                "events in :index order to stream (check it without --stream to have them sorted)",
            )
        if ev.index is not None:
            last_index = ev.index
    return last_index


def _at(ev: Event, line0: int) -> Event:
    """The event with its line in the whole file, not in its chunk."""
    if ev.line is None or line0 == 1:
        return ev
    return replace(ev, line=ev.line + line0 - 1)


def check_stream(
    path: str | Path,
    model: Model | str | None = None,
    fmt: str = "auto",
    *,
    chunk_lines: int = 50_000,
    buckets: int = 64,
    nil_read: str | None = None,
    keep_going_s: float | None = 1.0,
    explain: bool = True,
    explain_budget_s: float = 2.0,
    spill_dir: str | None = None,
) -> tuple[CheckResult, StreamStats]:
    """Check a line-oriented history file with bounded memory; see the module rules."""
    t0 = time.perf_counter()
    stats = StreamStats(buckets=buckets)
    chosen: Model | None = None
    encoding: KeyEncoding | None = None
    pairer: _Pairer | None = None
    last_index: int | None = None
    nil_unknown = False
    fs: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="kvstore-stream-", dir=spill_dir) as tmp:
        spills = [open(Path(tmp) / f"{b}.bin", "wb") for b in range(buckets)]  # noqa: SIM115
        counts = [0] * buckets
        try:
            with open(path, encoding="utf-8") as fp:
                for line0, text in _chunks(fp, chunk_lines):
                    stats.chunks += 1
                    if fmt == "auto":
                        fmt = sniff_format(text)
                    if line0 == 1:
                        _refuse_vector(text, fmt)
                    try:
                        history = parse_history(text, fmt)
                    except HistoryFormatError as e:
                        where = None if e.line is None else e.line + line0 - 1
                        raise HistoryFormatError(
                            where, e.expected + " (streamed in chunks of whole lines)", e.found
                        ) from None
                    events = history.events
                    stats.events += len(events)
                    last_index = _in_file_order(events, line0, last_index)
                    seen = detect_key_encoding(events)
                    if encoding is None:
                        encoding = seen
                        nil_unknown = history.nil_read_is_unknown
                        if nil_read is not None:
                            nil_unknown = nil_read == "unknown"
                        pairer = _Pairer(history.fail_cas_is_false, encoding == "independent")
                    elif seen != encoding and seen != "none" and encoding != "none":
                        raise HistoryFormatError(
                            line0,
                            f"keys named the same way throughout ({encoding} in the first "
                            f"{chunk_lines} lines, {seen} here)",
                        )
                    assert pairer is not None
                    _spill(pairer.feed(events, line0), spills, counts, fs)
            if pairer is not None:
                _spill(pairer.finish(), spills, counts, fs)
                # The model, as infer_model picks it from every op (only pass 2 needs it).
                base = model
                if base is None:
                    base = model_for_fs(fs)
                elif isinstance(base, str):
                    base = get_model(base)
                chosen = with_nil_read(base, nil_unknown)
        finally:
            for f in spills:
                f.close()
        stats.parse_s = time.perf_counter() - t0
        stats.bucket_ops = counts
        stats.spilled_bytes = sum(os.path.getsize(Path(tmp) / f"{b}.bin") for b in range(buckets))
        if chosen is None:
            raise HistoryFormatError(None, "at least one event", "none")
        t1 = time.perf_counter()
        results = _check_buckets(
            Path(tmp), buckets, chosen, keep_going_s, explain, explain_budget_s, stats
        )
        stats.check_s = time.perf_counter() - t1
    results.sort(key=lambda p: repr(p.key))
    result = CheckResult(
        verdict=combine([p.verdict for p in results]),
        model=chosen.name,
        partitions=results,
        ops=stats.ops,
        elapsed=time.perf_counter() - t0,
        source=str(path),
        format=fmt,
    )
    return result, stats


def _spill(
    ops: Iterator[Operation],
    spills: Sequence[IO[bytes]],
    counts: list[int],
    fs: set[str],
) -> None:
    n = len(spills)
    for op in ops:
        fs.add(op.f)
        b = zlib.crc32(repr(op.key).encode()) % n
        row: _Row = (
            op.process, op.f, op.key, op.input, op.output, op.status,
            op.call, op.ret, op.call_time, op.ret_time, op.error, op.line,
        )  # fmt: skip
        pickle.dump(row, spills[b], protocol=pickle.HIGHEST_PROTOCOL)
        counts[b] += 1


def _load(path: Path) -> list[Operation]:
    rows: list[Operation] = []
    with open(path, "rb") as f:
        while True:
            try:
                row = pickle.load(f)  # our own spill file, in a private folder
            except EOFError:
                break
            rows.append(Operation(0, *row))
    rows.sort(key=lambda o: o.call)
    return rows


def _check_buckets(
    tmp: Path,
    buckets: int,
    model: Model,
    keep_going_s: float | None,
    explain: bool,
    explain_budget_s: float,
    stats: StreamStats,
) -> list[PartitionResult]:
    results: list[PartitionResult] = []
    stop = StopRule(None, keep_going_s)
    for b in range(buckets):
        ops = _load(tmp / f"{b}.bin")
        (tmp / f"{b}.bin").unlink()
        parts = partition_ops(model, ops)
        stats.keys += len(parts)
        ordered = sorted(parts.items(), key=lambda kv: repr(kv[0]))
        for pr in check_partitions(
            model, ordered, stop, explain=explain, explain_budget_s=explain_budget_s
        ):
            # Only a failing key, or one whose search the deadline cut short, keeps its
            # ops; a key the deadline reached first has none searched (nodes 0).
            if pr.verdict != NOT_LINEARIZABLE and not (pr.verdict == UNKNOWN_VERDICT and pr.nodes):
                pr = PartitionResult(pr.key, pr.verdict, [], pr.checked, None, pr.nodes, pr.elapsed)
            results.append(pr)
    return results
