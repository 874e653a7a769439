"""The project's JSON Lines history format (DESIGN.md, "History format").

Rules and invariants:
- One JSON object per non-blank line with `process`, `type` (invoke/ok/fail/info) and `f`;
  optional `index`, `time` (ns since test start), `key`, `value`, `error`; any other
  field is kept in `Event.extra` and written back out unchanged.
- Nemesis lines have process "nemesis"; they are read (and written) but never checked.
- Writing emits fields in a fixed order so that files diff cleanly; JSON has no tuples, so
  tuples are written as arrays and read back as tuples by `freeze`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from kvstore.checker.history import EVENT_TYPES, NEMESIS, Event, HistoryFormatError, freeze

_KNOWN = ("index", "time", "process", "type", "f", "key", "value", "error")


def event_from_json(obj: Any, line: int) -> Event:
    if not isinstance(obj, dict):
        raise HistoryFormatError(line, "a JSON object per line", type(obj).__name__)
    process = obj.get("process")
    typ = obj.get("type")
    f = obj.get("f")
    if process is None:
        raise HistoryFormatError(line, 'a "process" field')
    if typ not in EVENT_TYPES:
        raise HistoryFormatError(line, '"type" one of invoke, ok, fail, info', repr(typ))
    if process != NEMESIS and not isinstance(f, str):
        raise HistoryFormatError(line, 'an "f" string such as "read"', repr(f))
    t = obj.get("time")
    if t is not None and not isinstance(t, int | float):
        raise HistoryFormatError(line, '"time" as a number of nanoseconds', repr(t))
    idx = obj.get("index")
    if idx is not None and not isinstance(idx, int):
        raise HistoryFormatError(line, '"index" as an integer', repr(idx))
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return Event(
        process=freeze(process),
        type=typ,
        f=f if isinstance(f, str) else "",
        value=freeze(obj.get("value")),
        key=freeze(obj.get("key")),
        time=int(t) if t is not None else None,
        index=idx,
        error=obj.get("error"),
        extra=extra,
        line=line,
    )


def parse_jsonl_history(text: str) -> list[Event]:
    events: list[Event] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise HistoryFormatError(n, "a JSON object", f"invalid JSON ({e.msg})") from None
        events.append(event_from_json(obj, n))
    return events


def _plain(v: Any) -> Any:
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
