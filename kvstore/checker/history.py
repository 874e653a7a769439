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
  time after its invocation, or never; so does one completed by `info`.
- Nemesis events are those of process `nemesis` (Jepsen's `:nemesis`), whatever their `f`:
  a nemesis event with `f` read is never a client read. They are ignored by pairing and by
  key detection.
- Keys, detected per history (`detect_key_encoding`, from the client invocations only):
  `key-field` if any invocation has this project's `key` field; else `independent` if
  every one carries a Jepsen `independent` tuple, a 2-element vector `[k v]` whose k is an
  integer or a string (keywords included) and, for cas, whose v is itself `[from to]`
  (so a plain cas-register history, `[from to]` on every op, is never taken for tuples);
  else `none` (one register). An independent op gets key k and value v, its completion
  must carry the same k (or no value at all), and events keep the tuple as recorded.
- `fail` means the operation did not happen, except when `History.fail_cas_is_false` is set
  (the Jepsen etcd logs): there a failed `cas` happened and returned false.
- Values are normalised to hashable form (lists become tuples, dicts become `FrozenMap`s,
  sorted pairs that never equal a plain tuple) so models can keep them in memoised states.
- Hostile input is bad input, never a crash: values nest at most MAX_DEPTH containers deep
  (checked while reading, so nothing later recurses deeper), `process` is an integer or a
  string, `time` and `index` are integers from 0 to 2**63-1 (time may be a float), and
  every problem is a HistoryFormatError naming the line. Its message is one short line:
  `found` and `expected` are clipped, so a huge value cannot make a huge message.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["invoke", "ok", "fail", "info"]
Status = Literal["ok", "fail", "info"]
KeyEncoding = Literal["key-field", "independent", "none"]

EVENT_TYPES: frozenset[str] = frozenset({"invoke", "ok", "fail", "info"})
NEMESIS = "nemesis"
# Real histories nest a few levels (a cas pair, a list of appends); 64 leaves ample room
# while keeping every recursive walk (freeze, repr, the writers) far from Python's limit.
MAX_DEPTH = 64
_INT64 = 1 << 63
_CLIP = 120


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[: _CLIP - 24] + " ... " + text[-19:]


class HistoryFormatError(ValueError):
    """A history that cannot be read: says where (line) and what was expected."""

    def __init__(self, line: int | None, expected: str, found: str = "") -> None:
        self.line = line
        self.expected = _clip(expected)
        self.found = _clip(found)
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{self.detail}")

    @property
    def detail(self) -> str:
        """The message without its line: what was expected, and what was found."""
        tail = f", found {self.found}" if self.found else ""
        return f"expected {self.expected}{tail}"


def too_deep(line: int | None) -> HistoryFormatError:
    return HistoryFormatError(line, f"values nested at most {MAX_DEPTH} deep", "deeper nesting")


def check_process(process: Any, line: int | None, name: str = "process") -> Hashable:
    """`process` if it is an integer or a string (the forms Jepsen and we write)."""
    if isinstance(process, str) or (isinstance(process, int) and not isinstance(process, bool)):
        return process
    raise HistoryFormatError(line, f"{name} as an integer or a string", repr(process))


def check_time(t: Any, line: int | None, name: str = "time") -> int | None:
    """`t` as whole nanoseconds; None stays None. Bounded so float() and sorting are safe."""
    if t is None:
        return None
    # `not 0 <= t < _INT64` is also true for NaN.
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < _INT64:
        raise HistoryFormatError(
            line, f"{name} as a number of nanoseconds from 0 to 2**63-1", repr(t)
        )
    return int(t)


def check_index(idx: Any, line: int | None, name: str = "index") -> int | None:
    if idx is None:
        return None
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < _INT64:
        raise HistoryFormatError(line, f"{name} as an integer from 0 to 2**63-1", repr(idx))
    return idx


def check_depth(value: Any, line: int | None, depth: int = 0) -> None:
    """Raise HistoryFormatError if the JSON-like `value` (lists, dicts) nests too deep.

    For fields kept as decoded rather than frozen (`error`, extra fields).
    """
    if depth >= MAX_DEPTH:
        raise too_deep(line)
    for v in value.values() if isinstance(value, dict) else value:
        if isinstance(v, list | dict):
            check_depth(v, line, depth + 1)


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
        # Everything else is a repr; a process or f string is printed raw, so escape one
        # with control characters or lone surrogates (a terminal escape sequence in a
        # hostile history, or text that stdout cannot encode).
        return f"p{printable(self.process)} {printable(self.f)}({inner}) -> {res}"


def printable(v: Any) -> str:
    """`str(v)`, or its repr if that has characters a terminal should not see raw."""
    s = str(v)
    return s if s.isprintable() else repr(s)


@dataclass(slots=True)
class History:
    """A loaded history: its events in order, plus how the source format defines `fail`
    and a read of nil (`nil_read_is_unknown`: Knossos's rule, the read's value is unknown;
    otherwise nil is the value read). Models with a nil-read rule of their own follow it
    (see models.py)."""

    events: list[Event]
    format: str = "jsonl"
    fail_cas_is_false: bool = False
    source: str | None = None
    nil_read_is_unknown: bool = False
    # operations() memoised: (events list, its length, fail_cas_is_false) -> operations
    _paired: tuple[object, int, bool, tuple[Operation, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def key_encoding(self) -> KeyEncoding:
        """How the ops name their keys; see the module rules. Computed from the events on
        each call (one cheap pass), so it can never be stale."""
        return detect_key_encoding(self.events)

    def operations(self) -> list[Operation]:
        """The paired operations, a fresh list each call. Paired once and memoised:
        every check of a run asks, and pairing is its costliest pass. The memo is keyed
        on the events list and its length, so replacing or appending to `events` is
        seen; editing an event in place is not (events are frozen)."""
        paired = self._paired
        key = (self.events, len(self.events), self.fail_cas_is_false)
        if paired is None or paired[0] is not key[0] or paired[1:3] != key[1:]:
            ops = pair_operations(
                self.events,
                fail_cas_is_false=self.fail_cas_is_false,
                independent=self.key_encoding == "independent",
            )
            paired = self._paired = (*key, tuple(ops))
        return list(paired[3])

    @property
    def has_times(self) -> bool:
        return all(e.time is not None for e in self.events if not e.is_nemesis)


class FrozenMap(tuple[tuple[Any, Any], ...]):
    """A decoded map, frozen: its (key, value) pairs sorted by repr.

    Equal only to another FrozenMap: a plain tuple of pairs is a list in the history, and
    a read of `[["a", 1]]` must not match a write of `{"a": 1}`.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrozenMap) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self) + "}"


_NESTED = (list, tuple, dict, set, frozenset)


def freeze(value: Any, line: int | None = None) -> Any:
    """Hashable form of a decoded value (lists -> tuples, dicts -> FrozenMap, sets ->
    frozensets). Raises HistoryFormatError at `line` past MAX_DEPTH levels of nesting."""
    if isinstance(value, _NESTED):
        return _freeze(value, 0, line)
    return value  # the common case: a scalar, no walk at all


def _freeze(value: Any, depth: int, line: int | None) -> Any:
    if isinstance(value, list | tuple):
        if type(value) is FrozenMap:
            return value  # frozen already (an EDN map key), so its depth was checked
        if depth >= MAX_DEPTH:
            raise too_deep(line)
        return tuple([_freeze(v, depth + 1, line) for v in value])
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise too_deep(line)
        d = depth + 1
        pairs = [(_freeze(k, d, line), _freeze(v, d, line)) for k, v in value.items()]
        return FrozenMap(sorted(pairs, key=repr))
    if isinstance(value, set | frozenset):
        if depth >= MAX_DEPTH:
            raise too_deep(line)
        return frozenset([_freeze(v, depth + 1, line) for v in value])
    return value


def key_order(k: Any) -> tuple[int, Any, str]:
    """A sort key for keys of mixed types: numbers in numeric order, then the rest by repr
    (keys 1, 2, 10, not 1, 10, 2)."""
    if isinstance(k, int | float) and not isinstance(k, bool):
        return (0, k, "")
    return (1, 0, repr(k))


def _is_key(k: Any) -> bool:
    return isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool))


def _is_pair(v: Any) -> bool:
    # A FrozenMap (a decoded map) is a tuple subclass, never a vector: `type(v) is tuple`.
    return type(v) is tuple and len(v) == 2


def detect_key_encoding(events: Iterable[Event]) -> KeyEncoding:
    """`key-field`, `independent` or `none`, from the client invocations; see module rules."""
    seen = False
    tuples = True
    for ev in events:
        if ev.type != "invoke" or ev.is_nemesis:
            continue
        if ev.key is not None:
            return "key-field"
        seen = True
        if tuples:
            v = ev.value
            if not (_is_pair(v) and _is_key(v[0])) or (ev.f == "cas" and not _is_pair(v[1])):
                tuples = False  # keep scanning: a later :key field still wins
    return "independent" if seen and tuples else "none"


def _split_tuple(inv: Event) -> tuple[Any, Any]:
    if not (_is_pair(inv.value) and _is_key(inv.value[0])):
        raise HistoryFormatError(
            inv.line, "a Jepsen independent [key value] tuple", repr(inv.value)
        )
    return inv.value[0], inv.value[1]


def pair_operations(
    events: Iterable[Event], *, fail_cas_is_false: bool = False, independent: bool = False
) -> list[Operation]:
    """Pair invocations with completions per process; see the module rules.

    `independent`: values are Jepsen `[k v]` tuples; each op gets key k and value v.
    Raises HistoryFormatError for a completion with no open invocation or whose `f` differs
    from its invocation's, and (independent) for an ok completion of another key.
    """
    found: list[tuple[Any, ...]] = []
    open_calls: dict[Hashable, tuple[int, Event]] = {}

    def close(pos: int, inv: Event, comp: Event | None, comp_pos: int | None) -> None:
        if comp is None:
            status: Status = "info"
        else:
            status = comp.type  # type: ignore[assignment]
        output = comp.value if comp is not None else None
        key, inp = inv.key, inv.value
        if independent:
            key, inp = _split_tuple(inv)
            if output is not None and _is_pair(output) and output[0] == key:
                output = output[1]
            elif output is not None:
                if status == "ok":  # an ok op must say what it did, for its own key
                    raise HistoryFormatError(
                        comp.line if comp is not None else None,
                        f"a [key value] tuple of key {key!r} like its invocation's "
                        f"(line {inv.line})",
                        repr(output),
                    )
                # A fail or info completion's value is never used (the invocation's is).
                output = None
        if status == "fail" and fail_cas_is_false and inv.f == "cas":
            status = "ok"
            output = False
        # built once they are in call order: a frozen dataclass costs to construct twice
        found.append(
            (
                pos,
                inv.process,
                inv.f,
                key,
                inp,
                output,
                status,
                comp_pos if status != "info" else None,
                inv.time,
                comp.time if comp is not None and status != "info" else None,
                comp.error if comp is not None else None,
                inv.line,
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
    found.sort(key=lambda o: o[0])  # positions are unique: a total order
    return [
        Operation(i, process, f, key, inp, out, status, call, ret, t0, t1, error, line)
        for i, (call, process, f, key, inp, out, status, ret, t0, t1, error, line) in enumerate(
            found
        )
    ]
