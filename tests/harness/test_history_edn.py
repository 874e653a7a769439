"""The harness's history.edn follows Jepsen's conventions: ``:value [k v]`` for its many
registers (Jepsen's ``independent``), and reads back as the same history, key by key."""

from __future__ import annotations

import io

import edn_format

from kvstore.checker import Event, check_history, parse_history
from kvstore.checker.formats.edn import dump_edn

EVENTS = [
    Event(process=0, type="invoke", f="write", key="r1", value=5, time=1, index=0),
    Event(process=1, type="invoke", f="read", key="r2", value=None, time=2, index=1),
    Event(process=0, type="ok", f="write", key="r1", value=5, time=3, index=2),
    Event(process="nemesis", type="info", f="start", value={"killed": ["n2"]}, time=4, index=3),
    Event(process=1, type="ok", f="read", key="r2", value=None, time=5, index=4),
    Event(process=2, type="invoke", f="read", key="r1", value=None, time=6, index=5),
    Event(process=2, type="ok", f="read", key="r1", value=5, time=7, index=6),
]


def written() -> str:
    buf = io.StringIO()
    dump_edn(EVENTS, buf, independent=True)
    return buf.getvalue()


def test_keys_travel_in_the_value_as_jepsen_writes_them() -> None:
    lines = written().splitlines()
    first = edn_format.loads(lines[0])  # an independent EDN reader agrees
    kw = edn_format.Keyword
    assert list(first[kw("value")]) == ["r1", 5] and kw("key") not in first
    assert edn_format.loads(lines[3])[kw("process")] == kw("nemesis")  # nemesis: no tuple


def test_round_trip_gives_the_same_operations_per_key() -> None:
    history = parse_history(written(), "edn")
    ops = {(op.process, op.f, op.key, op.input, op.output) for op in history.operations()}
    assert ops == {
        (0, "write", "r1", 5, 5),
        (1, "read", "r2", None, None),
        (2, "read", "r1", None, 5),
    }
    assert check_history(history, "register").verdict == "linearizable"
