"""Reading and writing histories in every supported format.

Rules and invariants:
- Formats: `jsonl` (project), `edn` (Jepsen/Knossos: a vector of op maps or one map per
  line), `knossos` (Knossos's tabular `[process type f value]` vectors, one per line),
  `porcupine-kv` (one EDN map per line), `jepsen-log` (Jepsen log lines), `jepsen-txt`
  (Jepsen's tab-separated `history.txt`). `edn`, `knossos`
  and `porcupine-kv` are all read by the EDN reader, which takes maps and vectors in any
  mix. `auto` sniffs the first non-blank line: `[` or `(` followed by a plain value (the
  process) is `knossos`; `0<TAB>:invoke<TAB>...` is `jepsen-txt`.
- A folder is a Jepsen store folder: its history is `history.edn`, else `history.txt`,
  else `jepsen.log` (the first that exists), and a folder with none of them but a
  `latest` link (Jepsen's store root, or one test's folder of runs) is followed, at most
  three links deep. A folder with no history is a HistoryFormatError naming it.
- A read of nil: in `edn`, `knossos` and `jepsen-txt` histories it follows Knossos's register models
  (the read's value is unknown: it fits any state); in `jsonl` (this store returns nil
  for an absent key) and `jepsen-log` (Porcupine's etcd model, whose verdicts the corpus
  records) nil is the value read. `History.nil_read_is_unknown` says which; the CLI's
  `--nil-read` overrides it.
- Every reader either returns a History or raises HistoryFormatError naming the line and
  what was expected; nothing half-parsed escapes. That holds for hostile input too (deep
  nesting, huge numbers, invalid UTF-8, NUL bytes, wrong field types): see the limits in
  history.py. Invalid UTF-8 is reported at the line of the first undecodable byte.
- When every event has an `index` and the file is out of order, events are put in index
  order (stable), because the order of events is what real-time precedence is read from.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterable
from pathlib import Path

from kvstore.checker.formats.edn import dump_edn, parse_edn_history
from kvstore.checker.formats.jepsen_log import LINE as JEPSEN_LINE
from kvstore.checker.formats.jepsen_log import parse_jepsen_log
from kvstore.checker.formats.jepsen_txt import LINE as JEPSEN_TXT_LINE
from kvstore.checker.formats.jepsen_txt import parse_jepsen_txt
from kvstore.checker.formats.jsonl import JsonlWriter, dump_jsonl, parse_jsonl_history
from kvstore.checker.history import Event, History, HistoryFormatError

FORMATS = ("auto", "jsonl", "edn", "knossos", "porcupine-kv", "jepsen-log", "jepsen-txt")
STORE_FILES = ("history.edn", "history.txt", "jepsen.log")
_JSON_START = re.compile(r'^\s*\{\s*"')
# `[0 :invoke :read nil]`: a vector that opens with a plain value, not with another form.
_TABULAR_START = re.compile(r"^\s*[\[(][\s,]*[^\s,\[\](){}#;]")
_NIL_READ_UNKNOWN = frozenset({"edn", "knossos", "jepsen-txt"})

__all__ = [
    "FORMATS",
    "JsonlWriter",
    "dump_edn",
    "dump_jsonl",
    "load_history",
    "parse_history",
    "save_history",
    "sniff_format",
]


def sniff_format(text: str) -> str:
    """Guess the format from the first non-blank line."""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if _JSON_START.match(raw):
            return "jsonl"
        if JEPSEN_LINE.match(raw):
            return "jepsen-log"
        if JEPSEN_TXT_LINE.match(raw):
            return "jepsen-txt"
        if _TABULAR_START.match(raw):
            return "knossos"
        if raw.lstrip()[:1] in ("[", "(", "{", ";", "#"):
            return "edn"
        raise HistoryFormatError(
            1 + text[: text.index(raw)].count("\n"),
            "a JSON object, an EDN op map or vector, or a Jepsen log line",
            repr(raw[:60]),
        )
    return "jsonl"


def parse_history(text: str, fmt: str = "auto", *, source: str | None = None) -> History:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = sniff_format(text)
    if fmt == "jsonl":
        events = parse_jsonl_history(text)
    elif fmt in ("edn", "knossos", "porcupine-kv"):
        events = parse_edn_history(text)
    elif fmt == "jepsen-txt":
        events = parse_jepsen_txt(text)
    else:
        events = parse_jepsen_log(text)
    if events and all(e.index is not None for e in events):
        idx = [e.index for e in events]
        if any(a > b for a, b in itertools.pairwise(idx)):  # type: ignore[operator]
            events.sort(key=lambda e: e.index)  # type: ignore[arg-type,return-value]
    return History(
        events=events,
        format=fmt,
        fail_cas_is_false=(fmt == "jepsen-log"),
        source=source,
        nil_read_is_unknown=fmt in _NIL_READ_UNKNOWN,
    )


def find_history(folder: Path, links: int = 3) -> Path:
    """The history file of a Jepsen store folder (see the module rules)."""
    for name in STORE_FILES:
        if (folder / name).is_file():
            return folder / name
    latest = folder / "latest"
    if links > 0 and latest.is_dir():
        return find_history(latest, links - 1)
    raise HistoryFormatError(
        None,
        f"a history file, or a Jepsen store folder holding {', '.join(STORE_FILES)} "
        "(or a `latest` link to one)",
        f"the folder {str(folder)!r} with none of them",
    )


def load_history(path: str | Path, fmt: str = "auto") -> History:
    """Read a history file, or a Jepsen store folder's. Raises HistoryFormatError (with a
    line) or OSError."""
    p = Path(path)
    if p.is_dir():
        p = find_history(p)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HistoryFormatError(
            data.count(b"\n", 0, e.start) + 1,
            "UTF-8 text",
            f"undecodable byte {data[e.start : e.start + 1]!r} ({e.reason})",
        ) from None
    return parse_history(text, fmt, source=str(p))


def save_history(events: Iterable[Event], path: str | Path, fmt: str | None = None) -> None:
    """Write `jsonl` or `edn`; by default chosen from the suffix (.edn -> edn)."""
    p = Path(path)
    fmt = fmt or ("edn" if p.suffix == ".edn" else "jsonl")
    buf = io.StringIO()
    if fmt == "edn":
        dump_edn(events, buf)
    elif fmt == "jsonl":
        dump_jsonl(events, buf)
    else:
        raise ValueError(f"can only write jsonl or edn, not {fmt!r}")
    p.write_text(buf.getvalue(), encoding="utf-8")
