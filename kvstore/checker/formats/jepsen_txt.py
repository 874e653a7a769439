"""Jepsen's ``history.txt``: one op per line, tab-separated, as ``jepsen.util/op->str``
prints it: ``process TAB type TAB f TAB value [TAB error]``.

Rules: the process, type, f and value columns are EDN (``0``, ``:nemesis``, ``:invoke``,
``:read``, ``[1 2]``, ``nil``); the error column, when there is one, is free text (Jepsen
prints it with ``str``) and is kept as a string. Blank lines are skipped. Anything else
is a HistoryFormatError naming the line and the column, with the same limits as every
other reader (the EDN reader's depth and digit bounds).
"""

from __future__ import annotations

import re

from kvstore.checker.formats.edn import event_from_map, read_value
from kvstore.checker.history import Event, HistoryFormatError

# a line of it: `0<TAB>:invoke<TAB>` (what sniffing looks for)
LINE = re.compile(r"^[^\s]+\t:(?:invoke|ok|fail|info)\t")
_COLUMNS = ("process", "type", "f", "value")


def parse_jepsen_txt(text: str) -> list[Event]:
    events: list[Event] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split("\t", 4)
        if len(parts) < 4:
            raise HistoryFormatError(
                number, "process, type, f and value separated by tabs", repr(raw[:60])
            )
        fields: dict[str, object] = {}
        for column, cell in zip(_COLUMNS, parts, strict=False):
            try:
                fields[column] = read_value(cell, number)
            except HistoryFormatError as e:
                raise HistoryFormatError(
                    number, f"{e.expected} in the {column} column", e.found
                ) from None
        if len(parts) == 5:
            fields["error"] = parts[4]
        events.append(event_from_map(fields, number))
    return events
