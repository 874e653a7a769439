"""History events and the operations paired from them.

Rules and invariants:
- An `Event` is one line of a history: an invocation (`type="invoke"`) or a completion
  (`ok`, `fail`, `info`) of operation `f` by `process`. Field names follow Jepsen so that
  histories convert both ways between JSON Lines and EDN.
- Events are ordered by their position in the history (`History.events`). That order, not
  the `time` field, decides real-time precedence for linearizability: op A precedes op B iff
  A's completion comes before B's invocation. `time` (ns) is only used where real durations
  matter (staleness, drawings).
- `pair_operations` matches each invocation with the next completion of the same process.
  An invocation without a completion (or followed by another invocation of the same process,
  which means the process crashed) becomes an `info` operation: it may have happened at any
  time after its invocation, or never. Nemesis events are ignored.
- `fail` means the operation did not happen, except when `History.fail_cas_is_false` is set
  (the Jepsen etcd logs): there a failed `cas` happened and returned false.
- Values are normalised to hashable form (lists become tuples, dicts become sorted tuples
  of pairs) so models can keep them in memoised states.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

EventType = Literal["invoke", "ok", "fail", "info"]
Status = Literal["ok", "fail", "info"]

EVENT_TYPES: frozenset[str] = frozenset({"invoke", "ok", "fail", "info"})
NEMESIS = "nemesis"


class HistoryFormatError(ValueError):
    """A history that cannot be read: says where (line) and what was expected."""

    def __init__(self, line: int | None, expected: str, found: str = "") -> None:
        self.line = line
        self.expected = expected
        self.found = found
        where = f"line {line}: " if line is not None else ""
        tail = f", found {found}" if found else ""
        super().__init__(f"{where}expected {expected}{tail}")


@dataclass(frozen=True, slots=True)
class Event:
    """One history line. `extra` keeps fields this module does not interpret."""

    process: Hashable
    type: str
    f: str
    value: Any = None
    key: Any = None
    time: int | None = None
    index: int | None = None
    error: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def is_nemesis(self) -> bool:
        return self.process == NEMESIS


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion.

    `call` and `ret` are positions in the event list; `ret is None` means no completion was
    seen (treated as completing at +infinity). `input` is the invocation's value, `output`
    the completion's value (None when there was none).
    """

    id: int
    process: Hashable
    f: str
    key: Any
    input: Any
    output: Any
    status: Status
    call: int
    ret: int | None
    call_time: int | None = None
    ret_time: int | None = None
    error: Any = None
    line: int | None = None

    def describe(self) -> str:
        """A short human form such as `p3 write(k1, 5) -> ok`."""
        key = f"{self.key!r}, " if self.key is not None else ""
        arg = "" if self.input is None else repr(self.input)
        inner = f"{key}{arg}".rstrip(", ")
        res: str = self.status
        if self.status == "ok" and self.output is not None and self.output != self.input:
            res = f"ok {self.output!r}"
        elif self.ret is None:
            res = "info (no completion)"
        return f"p{self.process} {self.f}({inner}) -> {res}"


@dataclass(slots=True)
class History:
    """A loaded history: its events in order, plus how the source format defines `fail`."""

    events: list[Event]
    format: str = "jsonl"
    fail_cas_is_false: bool = False
    source: str | None = None

    def operations(self) -> list[Operation]:
        return pair_operations(self.events, fail_cas_is_false=self.fail_cas_is_false)

    @property
    def has_times(self) -> bool:
        return all(e.time is not None for e in self.events if not e.is_nemesis)


def freeze(value: Any) -> Any:
    """Hashable form of a decoded value (lists -> tuples, dicts -> sorted pairs)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def pair_operations(events: Iterable[Event], *, fail_cas_is_false: bool = False) -> list[Operation]:
    """Pair invocations with completions per process; see the module rules.

    Raises HistoryFormatError for a completion with no open invocation or whose `f` differs
    from its invocation's.
    """
    ops: list[Operation] = []
    open_calls: dict[Hashable, tuple[int, Event]] = {}

    def close(pos: int, inv: Event, comp: Event | None, comp_pos: int | None) -> None:
        if comp is None:
            status: Status = "info"
        else:
            status = comp.type  # type: ignore[assignment]
        output = comp.value if comp is not None else None
        if status == "fail" and fail_cas_is_false and inv.f == "cas":
            status = "ok"
            output = False
        ops.append(
            Operation(
                id=len(ops),
                process=inv.process,
                f=inv.f,
                key=inv.key,
                input=inv.value,
                output=output,
                status=status,
                call=pos,
                ret=comp_pos if status != "info" else None,
                call_time=inv.time,
                ret_time=comp.time if comp is not None and status != "info" else None,
                error=comp.error if comp is not None else None,
                line=inv.line,
            )
        )

    for pos, ev in enumerate(events):
        if ev.is_nemesis:
            continue
        if ev.type == "invoke":
            prev = open_calls.pop(ev.process, None)
            if prev is not None:
                close(prev[0], prev[1], None, None)
            open_calls[ev.process] = (pos, ev)
        elif ev.type in ("ok", "fail", "info"):
            opened = open_calls.pop(ev.process, None)
            if opened is None:
                raise HistoryFormatError(
                    ev.line, f"an invocation by process {ev.process!r} before this {ev.type}"
                )
            if opened[1].f != ev.f:
                raise HistoryFormatError(
                    ev.line,
                    f"a completion of {opened[1].f!r} (invoked on line {opened[1].line})",
                    repr(ev.f),
                )
            close(opened[0], opened[1], ev, pos)
        else:
            raise HistoryFormatError(ev.line, "type invoke, ok, fail or info", repr(ev.type))
    for pos, ev in open_calls.values():
        close(pos, ev, None, None)
    ops.sort(key=lambda o: o.call)
    return [replace(o, id=i) for i, o in enumerate(ops)]
