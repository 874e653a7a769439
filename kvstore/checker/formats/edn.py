"""A small, fast EDN reader and writer for Jepsen/Knossos histories.

Rules and invariants:
- Reads the EDN subset histories use: nil, booleans, integers (with an optional N), floats
  (optional M; ##Inf and ##-Inf, which the writer uses for infinities), strings,
  characters, keywords, symbols, vectors, lists, maps, sets, `#_` discard and tagged
  literals (the tag is dropped, the value kept, so `#inst "..."`
  reads as its string). Our own tokenizer (not edn_format) because it is several times
  faster and knows the line of every form, which error messages need.
- Keywords read as `Keyword` (a str subclass, so `:read` compares equal to "read") and
  symbols as `Symbol`; the writer turns them back into `:read` / `read`.
- In an op's `:value` and `:key` (what models compare), keywords and symbols become
  `KeywordValue` / `SymbolValue`, which equal only their own kind: `:a`, `a` and "a" are
  three different values, as in Clojure and so in Jepsen and Knossos. Integers and
  strings never compare equal in Python, so `1` and "1" stay distinct too.
- Vectors and lists read as tuples (hashable); maps as dicts; sets as frozensets.
- A history file is either one vector/list of ops or a sequence of top-level ops (one per
  line in practice), as Knossos's `read-history` takes them. An op is a map or Knossos's
  tabular vector `[process type f value]`, optionally with a fifth element (a time or an
  index in some files), which is kept in `Event.extra["fifth"]` and not interpreted
  (Knossos ignores it too; file order decides). A file starting with `[` or `(` is one
  vector of ops unless the next token is a plain value (a process, as in `[0 :invoke
  :read nil]`): then it is a tabular file, one op per top-level vector. Each op keeps the
  line it started on.
- Hostile input is a HistoryFormatError with a line, never a crash: collections nest at
  most MAX_DEPTH + 1 deep (an op map plus a value of MAX_DEPTH), `#_` and tags are read
  with an explicit stack rather than recursion, a tag or `#_` must be followed by a form,
  integers have at most _MAX_INT_DIGITS digits, strings must be closed and `\\u` escapes
  must have four hex digits.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

from kvstore.checker.history import (
    EVENT_TYPES,
    MAX_DEPTH,
    NEMESIS,
    Event,
    FrozenMap,
    HistoryFormatError,
    check_index,
    check_process,
    check_time,
    freeze,
    too_deep,
)


class Keyword(str):
    """An EDN keyword, without its leading colon."""

    __slots__ = ()


class Symbol(str):
    """An EDN symbol."""

    __slots__ = ()


class KeywordValue(Keyword):
    """A keyword inside an op's value or key: equal only to another keyword, never to the
    string of the same text (Jepsen's :a and "a" are different values)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyword) and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    # Equal objects hash alike: a KeywordValue equals the plain Keyword of its text.
    __hash__ = str.__hash__

    def __repr__(self) -> str:
        return ":" + str.__str__(self)


class SymbolValue(Symbol):
    """A symbol inside an op's value or key: equal only to another symbol."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Symbol) and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__

    def __repr__(self) -> str:
        return str.__str__(self)


def strict_values(v: Any) -> Any:
    """`v` with every keyword and symbol made a KeywordValue / SymbolValue (see the module
    rules), ready for `freeze`. Nesting is bounded by the reader, so recursion is safe."""
    t = type(v)
    if t is Keyword:
        return KeywordValue(v)
    if t is Symbol:
        return SymbolValue(v)
    if t is tuple or t is FrozenMap:
        items = [strict_values(x) for x in v]
        # A FrozenMap's pairs are sorted by repr, which the new types change: re-sort.
        return FrozenMap(sorted(items, key=repr)) if t is FrozenMap else tuple(items)
    if t is dict:
        return {strict_values(k): strict_values(x) for k, x in v.items()}
    if t is frozenset:
        return frozenset(strict_values(x) for x in v)
    return v  # scalars: the common case


_TOKEN = re.compile(
    r"""
    (?P<ws>(?:[\s,]+|;[^\n]*)+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<open>[\[({]|\#\{)
  | (?P<close>[\])}])
  | (?P<disc>\#_)
  | (?P<tag>\#[A-Za-z][^\s,\[\](){}";]*)
  | (?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9a-fA-F]{4}|.))
  | (?P<atom>[^\s,\[\](){}";]+)
  | (?P<bad>.)
    """,
    re.X | re.S,
)
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
_CHARS = {
    "newline": "\n",
    "space": " ",
    "tab": "\t",
    "return": "\r",
    "formfeed": "\f",
    "backspace": "\b",
}
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
# EDN's symbolic values. ##NaN is left a symbol: NaN equals nothing, not even itself.
_SPECIAL_FLOATS = {"##Inf": float("inf"), "##-Inf": float("-inf")}
_END = object()
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_NEWLINE = re.compile("\n")
# Python's own default limit: int() of a longer digit string is slow (quadratic), and
# the interpreter may have been told to allow any length.
_MAX_INT_DIGITS = 4300
# Collections inside an op map: the map itself is one level.
_MAX_NESTING = MAX_DEPTH + 1


class _Malformed(Exception):
    """A bad token; the reader adds the line."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(expected)
        self.expected = expected
        self.found = found


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n == "u":
                hex4 = body[i + 2 : i + 6]
                if not _HEX4.fullmatch(hex4):
                    raise _Malformed("four hex digits after \\u", repr(body[i : i + 6]))
                out.append(chr(int(hex4, 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _atom(text: str) -> Any:
    if text == "nil":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if text[0] == ":":
        return Keyword(text[1:])
    if _INT.fullmatch(text):
        digits = text.rstrip("N")
        if len(digits) > _MAX_INT_DIGITS:
            raise _Malformed(f"integers of at most {_MAX_INT_DIGITS} digits", "a longer one")
        try:
            return int(digits)
        except ValueError:  # the interpreter's own limit may be lower
            raise _Malformed("a shorter integer", f"{len(digits)} digits") from None
    if _FLOAT.fullmatch(text):
        return float(text.rstrip("M"))
    if text in _SPECIAL_FLOATS:  # `1e999` reads as infinity, and is written back so
        return _SPECIAL_FLOATS[text]
    return Symbol(text)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [
            (m.lastgroup or "", m.group(), m.start())
            for m in _TOKEN.finditer(text)
            if m.lastgroup != "ws"
        ]
        self.pos = 0
        self.depth = 0  # collections open around the current token
        self._newlines = [m.start() for m in _NEWLINE.finditer(text)]  # C speed, not per char

    def line_at(self, offset: int) -> int:
        return bisect.bisect_right(self._newlines, offset - 1) + 1

    def line(self) -> int:
        if self.pos < len(self.tokens):
            return self.line_at(self.tokens[self.pos][2])
        return self.line_at(len(self.text))

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def peek_close(self) -> bool:
        return not self.at_end() and self.tokens[self.pos][0] == "close"

    def form(self) -> Any:
        """Read one form; returns _END at a closing bracket (consumed by the caller)."""
        # Pending `#_` and tag prefixes, innermost last: a chain of them needs no recursion.
        prefixes: list[str] = []
        while True:
            if self.pos >= len(self.tokens):
                if prefixes:
                    last = self.tokens[self.pos - 1]  # the file's last token, on its line
                    raise HistoryFormatError(
                        self.line_at(last[2]), f"a form after {prefixes[-1]}", "end of file"
                    )
                raise HistoryFormatError(self.line(), "an EDN value", "end of file")
            kind, tok, off = self.tokens[self.pos]
            self.pos += 1
            try:
                if kind == "atom":
                    v = _atom(tok)
                elif kind == "str":
                    v = _unescape(tok[1:-1])
                elif kind == "open":
                    v = self._collection(tok)
                elif kind == "close":
                    if prefixes:
                        raise _Malformed(f"a form after {prefixes[-1]}", repr(tok))
                    self.pos -= 1
                    return _END
                elif kind == "disc" or kind == "tag":
                    prefixes.append(tok)
                    continue
                elif kind == "char":
                    v = _char(tok[1:])
                elif tok == '"':
                    raise _Malformed(
                        "a closing '\"' for this string", repr(self.text[off : off + 40])
                    )
                else:
                    raise _Malformed("EDN", repr(tok))
            except _Malformed as e:
                raise HistoryFormatError(self.line_at(off), e.expected, e.found) from None
            # A tag wraps v and is dropped; a `#_` drops v, and what is left wants a form.
            while prefixes and prefixes[-1] != "#_":
                prefixes.pop()
            if not prefixes:
                return v
            prefixes.pop()

    def _collection(self, opener: str) -> Any:
        start = self.tokens[self.pos - 1][2]
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise too_deep(self.line_at(start))
        items: list[Any] = []
        closer = _CLOSERS[opener]
        while True:
            if self.at_end():
                raise HistoryFormatError(
                    self.line(),
                    f"{closer!r} to close {opener!r} opened on line {self.line_at(start)}",
                )
            item = self.form()
            if item is _END:
                tok = self.tokens[self.pos][1]
                if tok != closer:
                    raise HistoryFormatError(self.line(), repr(closer), repr(tok))
                self.pos += 1
                break
            items.append(item)
        self.depth -= 1
        if opener == "{":
            if len(items) % 2:
                raise HistoryFormatError(self.line_at(start), "a map with an even number of forms")
            return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}
        if opener == "#{":
            return frozenset(_hashable(i) for i in items)
        return tuple(items)


def _char(body: str) -> str:
    if body in _CHARS:
        return _CHARS[body]
    if len(body) == 5 and body[0] == "u":
        return chr(int(body[1:], 16))  # the token pattern allows only four hex digits
    return body


def _hashable(v: Any) -> Any:
    # Map keys and set members: a vector may hold a map, so tuples are frozen too.
    return freeze(v) if isinstance(v, dict | tuple) else v


def read_forms(text: str) -> list[tuple[int, Any]]:
    """All top-level forms with their starting line."""
    r = _Reader(text)
    out: list[tuple[int, Any]] = []
    while not r.at_end():
        line = r.line()
        v = r.form()
        if v is _END:
            raise HistoryFormatError(line, "a value", repr(r.tokens[r.pos][1]))
        out.append((line, v))
    return out


def read_value(text: str, line: int | None = None) -> Any:
    """Exactly one EDN value (used for the value column of Jepsen log lines)."""
    try:
        forms = read_forms(text)
    except HistoryFormatError as e:
        raise HistoryFormatError(line, e.expected, e.found) from None
    if len(forms) != 1:
        raise HistoryFormatError(line, "one EDN value", repr(text))
    return forms[0][1]


def _op_maps(text: str) -> Iterator[tuple[int, Any]]:
    r = _Reader(text)
    if r.at_end():
        return
    first_kind, first_tok, _ = r.tokens[0]
    # `[0 :invoke ...`: a tabular file, one op vector per line, not one vector of ops.
    tabular = len(r.tokens) > 1 and r.tokens[1][0] in ("atom", "str", "char")
    if first_kind == "open" and first_tok in ("[", "(") and not tabular:
        # One vector of ops: read element by element to know each op's line.
        r.pos = 1
        while True:
            if r.at_end():
                raise HistoryFormatError(r.line(), f"a closing bracket for {first_tok!r}")
            if r.peek_close():
                tok = r.tokens[r.pos][1]
                if tok != _CLOSERS[first_tok]:
                    raise HistoryFormatError(r.line(), repr(_CLOSERS[first_tok]), repr(tok))
                r.pos += 1
                break
            line = r.line()
            yield line, r.form()
        if not r.at_end():
            raise HistoryFormatError(r.line(), "end of file after the vector of operations")
        return
    while not r.at_end():
        line = r.line()
        v = r.form()
        if v is _END:
            raise HistoryFormatError(line, "an operation map", repr(r.tokens[r.pos][1]))
        yield line, v


def _field(m: dict[Any, Any], name: str) -> Any:
    return m.get(Keyword(name), m.get(name))


_TUPLE_FIELDS = (Keyword("process"), Keyword("type"), Keyword("f"), Keyword("value"))


def event_from_map(m: Any, line: int) -> Event:
    """Build an Event from one op map (keys may be keywords or strings), or from a Knossos
    `[process type f value]` vector (with an optional fifth element)."""
    if type(m) is tuple and len(m) in (4, 5):
        fields: dict[Any, Any] = dict(zip(_TUPLE_FIELDS, m[:4], strict=True))
        if len(m) == 5:
            fields["fifth"] = m[4]
        m = fields
    elif not isinstance(m, dict):
        raise HistoryFormatError(
            line,
            "an operation map like {:process 0, :type :invoke, :f :read} "
            "or a [process type f value] vector",
        )
    process = _field(m, "process")
    typ = _field(m, "type")
    f = _field(m, "f")
    if process is None:
        raise HistoryFormatError(line, "a :process")
    process = check_process(process, line, ":process")
    if isinstance(process, str) and str(process) == NEMESIS:
        process = NEMESIS
    if not isinstance(typ, str) or str(typ) not in EVENT_TYPES:
        raise HistoryFormatError(line, ":type :invoke, :ok, :fail or :info", repr(typ))
    if process != NEMESIS and not isinstance(f, str):
        if f is None:
            raise HistoryFormatError(line, "an :f")
        raise HistoryFormatError(line, ":f as a keyword such as :read", repr(f))
    known = {"process", "type", "f", "value", "key", "time", "index", "error"}
    extra = {str(k): v for k, v in m.items() if str(k) not in known}
    return Event(
        process=process,
        type=str(typ),
        f=str(f) if f is not None else "",
        value=freeze(strict_values(_field(m, "value")), line),
        key=freeze(strict_values(_field(m, "key")), line),
        time=check_time(_field(m, "time"), line, ":time"),
        index=check_index(_field(m, "index"), line, ":index"),
        error=_field(m, "error"),
        extra=extra,
        line=line,
    )


def parse_edn_history(text: str) -> list[Event]:
    return [event_from_map(m, line) for line, m in _op_maps(text)]


# ----------------------------------------------------------------------------- writing

_KEYWORD_FIELDS = ("type", "f")


def to_edn(v: Any) -> str:
    """EDN text for a Python value; strings in `Keyword` become keywords."""
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Keyword):
        return ":" + v
    if isinstance(v, Symbol):
        return str(v)
    if isinstance(v, str):
        body = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return '"' + body.replace("\t", "\\t").replace("\r", "\\r") + '"'
    if isinstance(v, float) and not math.isfinite(v):
        return "##NaN" if math.isnan(v) else ("##Inf" if v > 0 else "##-Inf")
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{to_edn(k)} {to_edn(x)}" for k, x in v.items()) + "}"
    if isinstance(v, FrozenMap):  # before tuple: it is one, but it was a map
        return "{" + ", ".join(f"{to_edn(k)} {to_edn(x)}" for k, x in v) + "}"
    if isinstance(v, set | frozenset):
        return "#{" + " ".join(to_edn(x) for x in v) + "}"
    if isinstance(v, list | tuple):
        return "[" + " ".join(to_edn(x) for x in v) + "]"
    return to_edn(str(v))


def event_to_edn(ev: Event, *, independent: bool = False) -> str:
    """One op map. ``independent``: a keyed op's key goes into ``:value [k v]`` as Jepsen's
    ``independent`` checker writes it (and reads it back per key), not into ``:key``."""
    parts: list[tuple[str, Any]] = []
    if ev.index is not None:
        parts.append(("index", ev.index))
    if ev.time is not None:
        parts.append(("time", ev.time))
    proc = Keyword(NEMESIS) if ev.process == NEMESIS else ev.process
    parts += [("type", Keyword(ev.type)), ("f", Keyword(ev.f)), ("process", proc)]
    if ev.key is not None and independent and ev.process != NEMESIS:
        parts.append(("value", [ev.key, ev.value]))
    else:
        if ev.key is not None:
            parts.append(("key", ev.key))
        parts.append(("value", ev.value))
    if ev.error is not None:
        err = ev.error
        parts.append(("error", Keyword(err) if isinstance(err, str) and " " not in err else err))
    parts += list(ev.extra.items())
    return "{" + ", ".join(f":{k} {to_edn(v)}" for k, v in parts) + "}"


def dump_edn(events: Iterable[Event], fp: IO[str], *, independent: bool = False) -> None:
    """One op map per line (Jepsen's history.edn layout), readable by edn_format too."""
    for ev in events:
        fp.write(event_to_edn(ev, independent=independent))
        fp.write("\n")
