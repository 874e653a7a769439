"""Jepsen log lines, as in the etcd logs of Porcupine's and ahorn's test data.

Rules and invariants:
- A line is `INFO  jepsen.util - PROCESS  :TYPE  :F  VALUE` (tabs or spaces); the VALUE
  column is EDN (`nil`, `3`, `[1 2]`, `:timed-out`). Blank lines are skipped.
- Completions of type `info`/`fail` carry a reason (`:timed-out`) rather than a value, so
  that column becomes `Event.error`.
- In these logs `:fail :cas` means the compare did not match: the cas happened and
  returned false. The loader marks the History (`fail_cas_is_false`) rather than
  rewriting events, so the events stay as recorded.
- There are no timestamps: the line order is the real-time order.
- Values are read by the EDN reader (so its depth and integer limits apply, and a keyword
  value stays distinct from a string: see edn.py) and frozen;
  a process or value number longer than _MAX_DIGITS digits is bad input, as is any line
  that does not match.
"""

from __future__ import annotations

import re

from kvstore.checker.formats.edn import read_value, strict_values
from kvstore.checker.history import Event, HistoryFormatError, freeze

LINE = re.compile(r"^\s*INFO\s+jepsen\.util\s+-\s+(\S+)\s+:(\w+)\s+:(\S+)(?:\s+(.*?))?\s*$")
_SIMPLE_INT = re.compile(r"-?\d+")
_MAX_DIGITS = 4300  # as the EDN reader: int() of longer strings is slow


def _int(tok: str, line: int, what: str) -> int:
    if len(tok) > _MAX_DIGITS:
        raise HistoryFormatError(line, f"{what} of at most {_MAX_DIGITS} digits", "a longer one")
    try:
        return int(tok)
    except ValueError:  # the interpreter's own limit may be lower
        raise HistoryFormatError(line, f"a shorter {what}", f"{len(tok)} digits") from None


def _process(tok: str, line: int) -> int | str:
    if tok.startswith(":"):
        return tok[1:]
    return _int(tok, line, "a process number") if _SIMPLE_INT.fullmatch(tok) else tok


def parse_jepsen_log(text: str) -> list[Event]:
    events: list[Event] = []
    for n, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        m = LINE.match(raw)
        if m is None:
            raise HistoryFormatError(
                n, "a Jepsen log line like 'INFO  jepsen.util - 3  :invoke  :read  nil'", repr(raw)
            )
        proc, typ, f, val_text = m.groups()
        if typ not in ("invoke", "ok", "fail", "info"):
            raise HistoryFormatError(n, "type :invoke, :ok, :fail or :info", f":{typ}")
        val_text = val_text or "nil"
        if val_text == "nil":
            value = None
        elif _SIMPLE_INT.fullmatch(val_text):
            value = _int(val_text, n, "an integer value")
        else:
            value = freeze(strict_values(read_value(val_text, n)), n)
        error = None
        if typ in ("info", "fail") and isinstance(value, str) and val_text.startswith(":"):
            error, value = str(value), None
        events.append(
            Event(process=_process(proc, n), type=typ, f=f, value=value, error=error, line=n)
        )
    return events
