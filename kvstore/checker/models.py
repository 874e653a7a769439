"""Sequential specifications the checker linearises against (Porcupine's shape).

Rules and invariants:
- A model is `init()` (the starting state), a pure `step(state, input, output) ->
  (ok, new_state)`, and an optional `partition(op) -> key`: ops with different keys are
  checked independently (P-compositionality), which is sound for per-key objects.
- `encode(op)` turns a history Operation into `(input, output)`, or None to drop it (a
  `fail` op did not happen; an unknown-outcome read has no effect). `output` is UNKNOWN
  when no completion was observed; `step` must then accept and return the state the op
  would leave. Models must be deterministic given (state, input).
- States, inputs and outputs must be hashable and compare by value: the search memoises
  (linearised-set, state) pairs.
- `is_readonly(input, output)` is True only if the op never changes any state; the search
  linearises such ops greedily (sound: a read valid now can always be moved to now).
- `viability(inputs)` may return a predicate that proves a pending read can never fit
  again (sound pruning only); returning None is always correct.
- register and cas-register (`register_model`) start at `initial` (default nil, as
  Jepsen's register tests start; Knossos's cas-register data starts at 0: pass it) and
  have a nil-read rule, `nil_read`: "unknown" is Knossos's (`(nil? (:value op))` means
  "we don't know what the read was", so the read fits any state and is dropped), "value"
  means the register held nil, "auto" (the built-in REGISTER and CAS_REGISTER) follows
  the history (`History.nil_read_is_unknown`, resolved by `check_history`) and is
  "value" where there is no history. Other models have `nil_read` None.
- Values compare with `==` as decoded: 1 and "1" differ, and so do an EDN keyword and
  the string of its text (edn.py).
- To add a model: write `step`, an `encode` if the default does not fit, and register it
  in MODELS.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from kvstore.checker.history import HistoryFormatError, Operation
from kvstore.checker.search import Observers


class _Unknown:
    """The output of an op whose completion was never seen."""

    _inst: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "?"


UNKNOWN: Any = _Unknown()

Step = Callable[[Any, Any, Any], tuple[bool, Any]]
Encoded = tuple[Any, Any]

READ_FS = frozenset({"read", "get"})
_ALIASES = {"get": "read", "put": "write"}


@dataclass(frozen=True)
class Model:
    name: str
    init: Callable[[], Any]
    step: Step
    encode: Callable[[Operation], Encoded | None]
    partition: Callable[[Operation], Hashable] | None = None
    is_readonly: Callable[[Any, Any], bool] = lambda _i, _o: False
    describe_state: Callable[[Any], str] = repr
    # Given a partition's encoded inputs, an optional viable(state, read_output) predicate
    # (see search.linearize): False only if that read can never fit again from state.
    viability: Callable[[Sequence[Any]], Callable[[Any, Any], bool] | None] = lambda _c: None
    describe_input: Callable[[Any, Any], str] = lambda i, o: f"{i!r} -> {o!r}"
    # "auto", "value" or "unknown" for the register models (see the module rules).
    nil_read: str | None = None
    # Which ops could observe a state an optional op leads to (search.linearize's
    # `observers`); None: optional ops are always tried.
    observers: Observers | None = None
    # Inputs whose effect ignores the state (search.linearize's `blind`); None: none known.
    blind: Callable[[Any], bool] | None = None


def by_key(op: Operation) -> Hashable:
    return op.key  # type: ignore[no-any-return]


# ------------------------------------------------------------------ register / cas-register


_READ: Encoded = ("read", None)


def _register_encode(
    allow_cas: bool, nil_is_unknown: bool = False
) -> Callable[[Operation], Encoded | None]:
    fs = {"read": "read", "write": "write", "delete": "delete", **_ALIASES}
    if allow_cas:
        fs["cas"] = "cas"

    def encode(op: Operation) -> Encoded | None:
        status = op.status
        if status == "fail":
            return None
        f = fs.get(op.f)
        if f == "read":
            # Knossos: a read of nil fits any state; a read changes nothing, so drop it.
            if status != "ok" or (nil_is_unknown and op.output is None):
                return None
            return _READ, op.output
        if f == "write":
            return ("write", op.input), (True if status == "ok" else UNKNOWN)
        if f == "delete":
            return ("write", None), (True if status == "ok" else UNKNOWN)
        if f == "cas":
            arg = op.input
            # A map of two entries is a FrozenMap, a tuple too, but not a [from to] pair.
            if not (type(arg) is tuple and len(arg) == 2):
                raise HistoryFormatError(op.line, "a cas value [from to]", repr(arg))
            out = (op.output is not False) if status == "ok" else UNKNOWN
            return ("cas", arg), out
        if op.f == "cas":
            raise HistoryFormatError(op.line, "read or write ops (use --model cas-register)")
        raise HistoryFormatError(
            op.line, "f read, write" + (", cas" if allow_cas else ""), repr(op.f)
        )

    return encode


def register_step(state: Any, inp: Any, out: Any) -> tuple[bool, Any]:
    f, arg = inp
    if f == "read":
        return (out is UNKNOWN or out == state), state
    if f == "write":
        return True, arg
    a, b = arg  # cas
    if out is UNKNOWN:
        return True, (b if state == a else state)
    if out:
        return state == a, b
    return state != a, state


def register_blind(inp: Any) -> bool:
    """A register write: the state after it is its value, whatever it was before."""
    return type(inp) is tuple and len(inp) == 2 and inp[0] == "write"


def _register_readonly(inp: Any, out: Any) -> bool:
    return inp[0] == "read" or (inp[0] == "cas" and out is False)


def _describe_register(inp: Any, out: Any) -> str:
    f, arg = inp
    if f == "read":
        return f"read -> {out!r}"
    if f == "write":
        return f"write {arg!r}"
    res = "?" if out is UNKNOWN else ("ok" if out else "compare failed")
    return f"cas {arg[0]!r}->{arg[1]!r} {res}"


def _register_observers(inputs: Sequence[Any], outputs: Sequence[Any]) -> Callable[[Any], int]:
    # A register's value is seen by a read of it, by a cas from it (unless it failed),
    # and by a failed cas from any other value. A write is blind: it sees nothing.
    by_value: dict[Any, int] = {}
    failed_from: dict[Any, int] = {}  # a -> the failed cas ops from a
    try:
        for j, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
            f, arg = inp
            if f == "read":
                by_value[out] = by_value.get(out, 0) | 1 << j
            elif f == "cas":
                a = arg[0]
                if out is False:
                    failed_from[a] = failed_from.get(a, 0) | 1 << j
                else:
                    by_value[a] = by_value.get(a, 0) | 1 << j
    except TypeError:  # unhashable values: say every op may observe
        every = (1 << len(inputs)) - 1
        return lambda _state: every
    failed = 0
    for m in failed_from.values():
        failed |= m

    def seen_by(state: Any) -> int:
        try:
            return by_value.get(state, 0) | (failed & ~failed_from.get(state, 0))
        except TypeError:  # an unhashable state: every op may observe it
            return -1

    return seen_by


NIL_READ_RULES = ("auto", "value", "unknown")


_REGISTERS: dict[tuple[bool, type, Any, str], Model] = {}


def register_model(*, cas: bool = False, initial: Any = None, nil_read: str = "auto") -> Model:
    """A register (with cas if `cas`) starting at `initial` (hashable: a frozen value);
    `nil_read` is "auto", "value" or "unknown" (see the module rules)."""
    if nil_read not in NIL_READ_RULES:
        raise ValueError(f"nil_read must be one of {', '.join(NIL_READ_RULES)}, not {nil_read!r}")
    # Models are immutable: one per setting, not one per check. The type is in the key
    # because 0, 0.0 and False are equal keys but different initial values.
    key = (cas, type(initial), initial, nil_read)
    model = _REGISTERS.get(key)
    if model is None:
        model = _REGISTERS[key] = _register_model(cas, initial, nil_read)
    return model


def _register_model(cas: bool, initial: Any, nil_read: str) -> Model:
    return Model(
        name="cas-register" if cas else "register",
        init=lambda: initial,
        step=register_step,
        encode=_register_encode(allow_cas=cas, nil_is_unknown=nil_read == "unknown"),
        partition=by_key,
        is_readonly=_register_readonly,
        describe_input=_describe_register,
        nil_read=nil_read,
        observers=_register_observers,
        blind=register_blind,
    )


REGISTER = register_model(cas=False)
CAS_REGISTER = register_model(cas=True)


def with_initial(model: Model, initial: Any) -> Model:
    """`model` (register or cas-register) starting at `initial` instead."""
    if model.nil_read is None:
        raise ValueError(
            f"an initial value applies to the register and cas-register models, not {model.name}"
        )
    return register_model(
        cas=model.name == "cas-register", initial=initial, nil_read=model.nil_read
    )


def with_nil_read(model: Model, nil_is_unknown: bool) -> Model:
    """Resolve an "auto" nil-read rule from the history's; any other model is unchanged."""
    if model.nil_read != "auto":
        return model
    return register_model(
        cas=model.name == "cas-register",
        initial=model.init(),
        nil_read="unknown" if nil_is_unknown else "value",
    )


# ------------------------------------------------------------------------------------ kv


def _kv_value(v: Any, line: int | None) -> str:
    # Absent and empty are the same value: Porcupine's kv returns "" for a missing key,
    # our store returns nil.
    if v is None:
        return ""
    if not isinstance(v, str):
        raise HistoryFormatError(line, "a string value for the kv model", repr(v))
    return v


def kv_encode(op: Operation) -> Encoded | None:
    if op.status == "fail":
        return None
    known = op.status == "ok"
    f = {"read": "get", "write": "put"}.get(op.f, op.f)
    if f == "get":
        return (("get", None), _kv_value(op.output, op.line)) if known else None
    if f in ("put", "append"):
        return (f, _kv_value(op.input, op.line)), (True if known else UNKNOWN)
    if f == "delete":
        return ("put", ""), (True if known else UNKNOWN)
    raise HistoryFormatError(op.line, "f get, put, append or delete", repr(op.f))


def kv_step(state: Any, inp: Any, out: Any) -> tuple[bool, Any]:
    f, arg = inp
    if f == "get":
        return (out is UNKNOWN or out == state), state
    if f == "put":
        return True, arg
    return True, state + arg  # append


def _str_prefix(state: Any, out: Any) -> bool:
    return isinstance(out, str) and out.startswith(state)


def kv_viability(inputs: Sequence[Any]) -> Callable[[Any, Any], bool] | None:
    # Without put/delete a key's value only grows by appends, so a later get must return
    # an extension of the current value.
    if any(f != "append" and f != "get" for f, _ in inputs):
        return None
    return _str_prefix


def _kv_observers(inputs: Sequence[Any], outputs: Sequence[Any]) -> Callable[[Any], int]:
    # A value only grows by appends and a put erases it: only a get that returned an
    # extension of it can ever see it.
    gets = [(j, o) for j, (i, o) in enumerate(zip(inputs, outputs, strict=True)) if i[0] == "get"]

    def seen_by(state: Any) -> int:
        mask = 0
        for j, o in gets:
            if isinstance(o, str) and o.startswith(state):
                mask |= 1 << j
        return mask

    return seen_by


def _describe_kv(inp: Any, out: Any) -> str:
    f, arg = inp
    return f"get -> {out!r}" if f == "get" else f"{f} {arg!r}"


KV = Model(
    name="kv",
    init=lambda: "",
    step=kv_step,
    encode=kv_encode,
    partition=by_key,
    is_readonly=lambda inp, _out: inp[0] == "get",
    describe_input=_describe_kv,
    viability=kv_viability,
    observers=_kv_observers,
)

MODELS: dict[str, Model] = {m.name: m for m in (REGISTER, CAS_REGISTER, KV)}


def infer_model(ops: Sequence[Operation]) -> Model:
    """kv if any get/put/append, else cas-register if any cas, else register."""
    return model_for_fs({op.f for op in ops})


def model_for_fs(fs: set[str]) -> Model:
    """`infer_model` from the set of the ops' `f` alone."""
    if fs & {"get", "put", "append"}:
        return KV
    if "cas" in fs:
        return CAS_REGISTER
    return REGISTER


def get_model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}") from None
