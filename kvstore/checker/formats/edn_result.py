"""A check result as EDN, to read next to what Jepsen and Knossos print (`--edn`).

Rules and invariants:
- The shape is Jepsen's `independent/checker` around Knossos's linearizability analysis:
  `{:valid? V, :results {k R ...}, :failures [k ...], ...}`. V is true, false or
  :unknown, merged as Jepsen merges validity (false if any key is false, else :unknown if
  any key is, else true); `:failures` lists the keys whose :valid? is false (an :unknown
  key is not a failure, as in Jepsen, where :unknown is truthy). A history with no keys
  is one register, under the key nil. Keys are in natural order (numbers numerically).
- A key's R: `{:valid? true}`; `{:valid? :unknown, :cause :timeout}`; or, for a failure,
  Knossos's fields `:op` (the completion that no linearization reaches), `:previous-ok`
  (the latest ok completion before the failing one in the longest linearizable prefix,
  or nil) and
  `:final-paths` (one path: the prefix's last steps as `{:model {:value S}, :op ...}`,
  then the failing op with `{:model {:inconsistent "why"}}`), plus this checker's
  `:prefix-length`, `:prefix-state`, `:failing-window` (ops that fail on their own) and
  `:window-minimal?`. Every R has `:op-count` (ops of that key).
- An op prints as recorded, as Knossos prints ops: its completion event (for an op that
  never completed, its invocation: what was attempted) with `:process :type :f
  :value`, `:key` for key-field histories, `:index` (the event's own, else its 0-based
  position in the history, as Knossos numbers ops), `:time` when there is one, and
  `:line` (this checker's addition). An independent op's value is the
  unwrapped v of its `[k v]` tuple, as in Jepsen's per-key subhistories.
- Layout: one entry per line wherever a map or vector of maps would pass 100 columns;
  op maps stay on one line (`pretty`).
- Top-level context: `:analyzer`, `:model`, `:initial` and `:nil-read` (register
  models), `:format`, `:key-encoding`, `:keys`, `:op-count`, `:seconds`, and
  `:staleness` when asked for. Map keys are keywords, except user keys in `:results`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import Any

from kvstore.checker.formats.edn import Keyword, to_edn
from kvstore.checker.history import History, Operation, key_order
from kvstore.checker.models import UNKNOWN, Model
from kvstore.checker.result import CheckResult, PartitionResult
from kvstore.checker.search import LINEARIZABLE, NOT_LINEARIZABLE

# Steps of the prefix shown before the failing op in :final-paths (Knossos shows one).
_PATH_STEPS = 3
_WIDTH = 100
_IDENT = re.compile(r"[A-Za-z][\w\-?!*]*")


def _k(name: str) -> Keyword:
    return Keyword(name)


def _valid(verdict: str) -> Any:
    if verdict == LINEARIZABLE:
        return True
    if verdict == NOT_LINEARIZABLE:
        return False
    return _k("unknown")


def _completion(history: History, op: Operation) -> int:
    """Where op's completion is: `ret`, or for an indeterminate op its `info` completion
    (the process's next event, if it is one), else its invocation."""
    if op.ret is not None:
        return op.ret
    events = history.events
    for pos in range(op.call + 1, len(events)):
        ev = events[pos]
        if ev.process == op.process and not ev.is_nemesis:
            return pos if ev.type == "info" else op.call
    return op.call


def _op(history: History, encoding: str, op: Operation) -> dict[Keyword, Any]:
    pos = _completion(history, op)
    ev = history.events[pos]
    value = ev.value
    if encoding == "independent" and type(value) is tuple and len(value) == 2:
        value = value[1]
    out: dict[Keyword, Any] = {
        _k("process"): _k("nemesis") if ev.is_nemesis else ev.process,
        _k("type"): _k(ev.type),
        _k("f"): _k(ev.f),
        _k("value"): value,
    }
    if encoding == "key-field":
        out[_k("key")] = op.key
    # Knossos numbers ops by position when a history has no :index of its own.
    out[_k("index")] = ev.index if ev.index is not None else pos
    if ev.time is not None:
        out[_k("time")] = ev.time
    out[_k("line")] = ev.line
    return out


def _inconsistent(model: Model, op: Operation, state: Any) -> str:
    """Why `op` cannot follow `state`, worded as Knossos's models word it."""
    enc = model.encode(op)
    if enc is None:
        return "no linearization reaches this op's completion"
    inp, out = enc
    if model.step(state, inp, out)[0]:
        # It fits this state, but no order of the concurrent ops gets it here in time.
        return "no linearization reaches this op's completion"
    f, arg = inp
    s = to_edn(state)
    if f in ("read", "get"):
        return f"can't read {to_edn(out)} from register {s}"
    if f == "cas" and out is False:
        return f"can't fail to CAS from {to_edn(arg[0])}: the register holds {s}"
    if f == "cas":
        return f"can't CAS {s} from {to_edn(arg[0])} to {to_edn(arg[1])}"
    return f"can't {model.describe_input(inp, out)} from {s}"


def _partition(
    history: History, encoding: str, model: Model | None, p: PartitionResult
) -> dict[Keyword, Any]:
    def op(o: Operation) -> dict[Keyword, Any]:
        return _op(history, encoding, o)

    r: dict[Keyword, Any] = {_k("valid?"): _valid(p.verdict)}
    ce = p.counterexample
    if p.verdict not in (LINEARIZABLE, NOT_LINEARIZABLE):
        r[_k("cause")] = _k("timeout")
    elif ce is not None:
        r[_k("op")] = op(ce.blocked)
        # Knossos's previous-ok: the latest ok completion before the failing one, not a
        # concurrent op the prefix placed first but that completed later.
        end = ce.blocked.ret if ce.blocked.ret is not None else len(history.events)
        oks = [
            s.op
            for s in ce.prefix
            if s.op.status == "ok" and s.op.ret is not None and s.op.ret < end
        ]
        prev = max(oks, key=lambda o: o.ret or 0, default=None)
        r[_k("previous-ok")] = op(prev) if prev is not None else None
        path: list[dict[Keyword, Any]] = [
            {_k("model"): {_k("value"): s.state_after}, _k("op"): op(s.op)}
            for s in ce.prefix[-_PATH_STEPS:]
        ]
        why = (
            _inconsistent(model, ce.blocked, ce.prefix_state)
            if model is not None
            else "no linearization reaches this op's completion"
        )
        path.append({_k("model"): {_k("inconsistent"): why}, _k("op"): op(ce.blocked)})
        r[_k("final-paths")] = [path]
        r[_k("prefix-length")] = len(ce.prefix)
        r[_k("prefix-state")] = ce.prefix_state
        r[_k("failing-window")] = [op(o) for o in ce.window]
        r[_k("window-minimal?")] = ce.window_minimal
    r[_k("op-count")] = len(p.ops)
    return r


def _data(v: Any) -> Any:
    """JSON-shaped data (the staleness report) as EDN data: identifier keys as keywords."""
    if isinstance(v, dict):
        out: dict[Any, Any] = {}
        for k, x in v.items():
            if isinstance(k, str) and _IDENT.fullmatch(k):
                k = _k(k.replace("_", "-"))
            elif isinstance(k, str) and k.isdigit():
                k = int(k)
            out[k] = _data(x)
        return out
    if isinstance(v, list | tuple):
        return [_data(x) for x in v]
    return v


def _value(v: Any) -> Any:
    return _k("unknown") if v is UNKNOWN else v


def result_to_edn(
    result: CheckResult,
    history: History,
    *,
    model: Model | None = None,
    initial: Any = None,
    nil_read: str | None = None,
    keys: Sequence[Hashable] = (),
    staleness: dict[str, Any] | None = None,
) -> str:
    """The EDN text of `result` (see the module rules), one top-level entry per line.

    `model` words the inconsistency of a failing op (None: a generic message); `initial`
    and `nil_read` are printed for the register models.
    """
    encoding = history.key_encoding  # one pass over the events, not one per op printed
    parts = sorted(result.partitions, key=lambda p: key_order(p.key))
    results = [(p.key, _partition(history, encoding, model, p)) for p in parts]
    top: list[tuple[str, Any]] = [
        ("valid?", _valid(result.verdict)),
        ("failures", [k for k, r in results if r[_k("valid?")] is False]),
        ("analyzer", _k("kvstore")),
        ("model", _k(result.model)),
    ]
    if result.model in ("register", "cas-register"):
        top.append(("initial", _value(initial)))
        if nil_read is not None:
            top.append(("nil-read", _k(nil_read)))
    top += [
        ("format", _k(result.format) if result.format else None),
        ("key-encoding", _k(encoding)),
        ("keys", list(keys)),
        ("op-count", result.ops),
        ("seconds", round(result.elapsed, 6)),
    ]
    if staleness is not None:
        top.append(("staleness", _data(staleness)))
    doc: dict[Any, Any] = {_k(name): v for name, v in top[:1]}
    doc[_k("results")] = dict(results)
    doc.update({_k(name): v for name, v in top[1:]})
    return pretty(doc)


def _holds_maps(v: Any) -> bool:
    items = v.values() if type(v) is dict else v if type(v) in (list, tuple) else ()
    return any(type(x) is dict or (type(x) in (list, tuple) and _holds_maps(x)) for x in items)


def pretty(v: Any, indent: int = 0) -> str:
    """EDN text of `v`: a map or vector that holds maps is broken one entry per line when
    its one-line form would pass _WIDTH columns; an op map stays on one line, however
    long, so each op reads as one line. The same data either way."""
    flat = to_edn(v)
    if indent + len(flat) <= _WIDTH or not _holds_maps(v):
        return flat
    pad = "\n" + " " * (indent + 1)
    if type(v) is dict and v:
        entries = []
        for k, x in v.items():
            ks = to_edn(k)
            entries.append(f"{ks} {pretty(x, indent + len(ks) + 2)}")
        return "{" + ("," + pad).join(entries) + "}"
    if type(v) in (list, tuple) and v:
        return "[" + pad.join(pretty(x, indent + 1) for x in v) + "]"
    return flat
