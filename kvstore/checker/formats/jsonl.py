"""The project's JSON Lines history format (DESIGN.md, "History format").

Rules and invariants:
- One JSON object per non-blank line with `process`, `type` (invoke/ok/fail/info) and `f`;
  optional `index`, `time` (ns since test start), `key`, `value`, `error`; any other
  field is kept in `Event.extra` and written back out unchanged.
- Nemesis lines have process "nemesis"; they are read (and written) but never checked.
- Writing emits fields in a fixed order so that files diff cleanly; JSON has no tuples, so
  tuples are written as arrays and read back as tuples by `freeze`; a decoded map is
  written as an object (as a list of pairs if it has keys that are not strings, which
  JSON cannot hold). JSON has no keywords either: an EDN keyword value is written as its
  string, so it is no longer distinct from one.
- Lines are split on "\n" only (a JSON string may hold U+2028 or U+0085 raw, and line
  numbers must match an editor's). NaN and Infinity are not JSON and are refused, as are
  integers longer than Python converts and values nested deeper than MAX_DEPTH: each is
  a HistoryFormatError naming the line, like any other malformed line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from kvstore.checker.history import (
    EVENT_TYPES,
    NEMESIS,
    Event,
    FrozenMap,
    HistoryFormatError,
    check_depth,
    check_index,
    check_process,
    check_time,
    freeze,
    too_deep,
)

_KNOWN = ("index", "time", "process", "type", "f", "key", "value", "error")


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


# One decoder for every line: json.loads with keyword arguments would build a new one per
# call. parse_constant only runs for NaN/Infinity/-Infinity, so it costs nothing otherwise.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def event_from_json(obj: Any, line: int) -> Event:
    if not isinstance(obj, dict):
        raise HistoryFormatError(line, "a JSON object per line", type(obj).__name__)
    process = obj.get("process")
    typ = obj.get("type")
    f = obj.get("f")
    if process is None:
        raise HistoryFormatError(line, 'a "process" field')
    process = check_process(process, line, '"process"')
    # `in` a frozenset hashes its operand: check the type first, a list is unhashable.
    if not isinstance(typ, str) or typ not in EVENT_TYPES:
        raise HistoryFormatError(line, '"type" one of invoke, ok, fail, info', repr(typ))
    if process != NEMESIS and not isinstance(f, str):
        raise HistoryFormatError(line, 'an "f" string such as "read"', repr(f))
    error = obj.get("error")
    if isinstance(error, list | dict):
        check_depth(error, line)
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    for v in extra.values():
        if isinstance(v, list | dict):
            check_depth(v, line)
    return Event(
        process=process,
        type=typ,
        f=f if isinstance(f, str) else "",
        value=freeze(obj.get("value"), line),
        key=freeze(obj.get("key"), line),
        time=check_time(obj.get("time"), line, '"time"'),
        index=check_index(obj.get("index"), line, '"index"'),
        error=error,
        extra=extra,
        line=line,
    )


def parse_jsonl_history(text: str) -> list[Event]:
    events: list[Event] = []
    for n, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = _DECODER.decode(raw)
        except json.JSONDecodeError as e:
            raise HistoryFormatError(
                n, "a JSON object", f"invalid JSON ({e.msg} at column {e.colno})"
            ) from None
        except _NotFinite as e:
            raise HistoryFormatError(n, "finite JSON numbers", str(e)) from None
        except ValueError as e:
            if "digits" not in str(e):
                raise HistoryFormatError(n, "a JSON object", f"invalid JSON ({e})") from None
            # An integer past sys.get_int_max_str_digits(), which bounds int() time.
            raise HistoryFormatError(
                n, f"integers of at most {sys.get_int_max_str_digits()} digits", "a longer one"
            ) from None
        except RecursionError:
            # The C decoder recurses per bracket: far past MAX_DEPTH, so say that.
            raise too_deep(n) from None
        events.append(event_from_json(obj, n))
    return events


def _plain(v: Any) -> Any:
    # A decoded map (FrozenMap, a tuple of pairs) is an object again; JSON keys are strings,
    # so one with other keys (possible from EDN) stays a list of [key, value] pairs.
    if isinstance(v, FrozenMap) and all(isinstance(k, str) for k, _ in v):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, frozenset | set):
        return sorted((_plain(x) for x in v), key=repr)
    return v


def event_to_json(ev: Event) -> str:
    obj: dict[str, Any] = {}
    if ev.index is not None:
        obj["index"] = ev.index
    if ev.time is not None:
        obj["time"] = ev.time
    obj["process"] = _plain(ev.process)
    obj["type"] = ev.type
    obj["f"] = ev.f
    if ev.key is not None:
        obj["key"] = _plain(ev.key)
    obj["value"] = _plain(ev.value)
    if ev.error is not None:
        obj["error"] = _plain(ev.error)
    for k, v in ev.extra.items():
        obj[k] = _plain(v)
    return json.dumps(obj, separators=(",", ":"), default=str)


def dump_jsonl(events: Iterable[Event], fp: IO[str]) -> None:
    for ev in events:
        fp.write(event_to_json(ev))
        fp.write("\n")


class JsonlWriter:
    """Append events to a JSON Lines file as they happen (flushes each line).

    Assigns `index` in write order when the event has none, so a crash mid-test still
    leaves a readable, ordered prefix.
    """

    def __init__(self, path: str, *, flush: bool = True) -> None:
        self._fp: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self._flush = flush
        self._next = 0

    def write(self, ev: Event) -> Event:
        if ev.index is None:
            ev = replace(ev, index=self._next)
        self._next = max(self._next, (ev.index or 0) + 1)
        self._fp.write(event_to_json(ev) + "\n")
        if self._flush:
            self._fp.flush()
        return ev

    def close(self) -> None:
        self._fp.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
