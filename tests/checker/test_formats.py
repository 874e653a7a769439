"""Reading and writing every history format, sniffing, and malformed input."""

from __future__ import annotations

import io
from pathlib import Path

import edn_format
import pytest

from kvstore.checker import (
    Event,
    HistoryFormatError,
    JsonlWriter,
    check_history,
    dump_edn,
    dump_jsonl,
    load_history,
    parse_history,
    save_history,
)
from kvstore.checker.formats import sniff_format
from kvstore.checker.formats.edn import Keyword, read_forms

JSONL = """\
{"index":0,"time":100,"process":0,"type":"invoke","f":"write","key":"k","value":1}
{"index":1,"time":150,"process":"nemesis","type":"info","f":"partition","value":["n1"]}
{"index":2,"time":200,"process":0,"type":"ok","f":"write","key":"k","value":1,"node":"n2"}
{"index":3,"time":300,"process":1,"type":"invoke","f":"read","key":"k","value":null}
{"index":4,"time":400,"process":1,"type":"ok","f":"read","key":"k","value":1}
"""

EDN_VECTOR = """[{:type :invoke, :f :write, :value 1, :process 0, :time 10, :index 0}
 {:type :info, :f :start, :process :nemesis, :value nil}
 {:type :ok, :f :write, :value 1, :process 0, :time 20, :index 1}
 {:type :invoke, :f :cas, :value [1 2], :process 1, :time 30, :index 2}
 {:type :fail, :f :cas, :value [1 2], :process 1, :time 40, :index 3, :error :timeout}
 {:type :invoke, :f :read, :value nil, :process 2, :time 50, :index 4}
 {:type :ok, :f :read, :value 1, :process 2, :time 60, :index 5}]
"""

JEPSEN_LOG = """INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 1   :invoke :cas    [3 2]
INFO  jepsen.util - 1   :fail   :cas    [3 2]
INFO  jepsen.util - 2\t:invoke\t:read\tnil
INFO  jepsen.util - 2\t:fail\t:read\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:write\t4
INFO  jepsen.util - 3\t:info\t:write\t:timed-out
"""

KV_LINES = """{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :invoke, :f :get, :key "0", :value nil}
{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}
"""


def test_jsonl_fields_nemesis_and_extra() -> None:
    h = parse_history(JSONL)
    assert h.format == "jsonl"
    assert len(h.events) == 5
    assert h.events[2].extra == {"node": "n2"}
    ops = h.operations()
    assert [(o.f, o.key, o.input, o.output, o.status) for o in ops] == [
        ("write", "k", 1, 1, "ok"),
        ("read", "k", None, 1, "ok"),
    ]
    assert ops[0].call_time == 100 and ops[0].ret_time == 200
    assert check_history(h).verdict == "linearizable"


def test_edn_vector_with_nemesis_and_failed_cas() -> None:
    h = parse_history(EDN_VECTOR)
    assert h.format == "edn"
    ops = h.operations()
    assert [o.status for o in ops] == ["ok", "fail", "ok"]
    assert ops[1].input == (1, 2)
    assert h.events[0].f == "write" and isinstance(h.events[0].f, str)
    res = check_history(h)
    assert res.model == "cas-register"
    assert res.verdict == "linearizable"  # a failed cas did not happen


def test_jepsen_log_semantics() -> None:
    h = parse_history(JEPSEN_LOG)
    assert h.format == "jepsen-log"
    assert h.fail_cas_is_false
    ops = h.operations()
    by_proc = {o.process: o for o in ops}
    assert by_proc[1].status == "ok" and by_proc[1].output is False  # compare mismatch
    assert by_proc[2].status == "fail" and by_proc[2].error == "timed-out"
    assert by_proc[3].status == "info" and by_proc[3].ret is None
    assert check_history(h).verdict == "linearizable"


def test_jepsen_log_failed_cas_constrains_the_state() -> None:
    # write 1 completes, then a cas 1->2 reports a compare mismatch: impossible.
    text = (
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
        "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\n"
        "INFO  jepsen.util - 1\t:fail\t:cas\t[1 2]\n"
    )
    assert check_history(parse_history(text)).verdict == "not linearizable"
    # The same as EDN: fail means the cas did not happen.
    assert check_history(parse_history(text, "jepsen-log")).verdict == "not linearizable"


def test_porcupine_kv_lines() -> None:
    h = parse_history(KV_LINES, "porcupine-kv")
    assert sniff_format(KV_LINES) == "edn"
    res = check_history(h)
    assert res.model == "kv"
    assert res.verdict == "linearizable"
    assert [p.key for p in res.partitions] == ["0"]


def test_missing_completion_is_info() -> None:
    h = parse_history(
        '{"process":0,"type":"invoke","f":"write","value":3}\n'
        '{"process":1,"type":"invoke","f":"read","value":null}\n'
        '{"process":1,"type":"ok","f":"read","value":3}\n'
        '{"process":0,"type":"invoke","f":"write","value":4}\n'
    )
    ops = h.operations()
    assert [o.status for o in ops] == ["info", "ok", "info"]
    assert check_history(h).verdict == "linearizable"


def test_events_sorted_by_index_when_out_of_order() -> None:
    lines = JSONL.splitlines()
    h = parse_history("\n".join([lines[2], lines[0], *lines[3:]]))
    assert [e.index for e in h.events] == [0, 2, 3, 4]


def test_edn_reader_values() -> None:
    forms = read_forms(
        '; comment\n{:a [1 -2 3.5 "s\\"q" nil true false] :b #{1} :c (x y) #_ :skipped '
        ':d #inst "2020" :e 12N :f \\a}'
    )
    ((line, m),) = forms
    assert line == 2
    assert m[Keyword("a")] == (1, -2, 3.5, 's"q', None, True, False)
    assert m["b"] == frozenset({1})
    assert m["c"] == ("x", "y")
    assert m["d"] == "2020" and m["e"] == 12 and m["f"] == "a"
    assert "skipped" not in m


@pytest.mark.parametrize(
    ("text", "fmt", "line", "fragment"),
    [
        ('{"process":0,"type":"invoke","f":"read"}\n{"process":0,"type":"ok"', "auto", 2, "JSON"),
        (
            '{"process":0,"type":"invoke","f":"read"}\n\n{"process":0,"type":"done","f":"read"}',
            "jsonl",
            3,
            "type",
        ),
        ('{"type":"invoke","f":"read"}', "jsonl", 1, "process"),
        ('{"process":0,"type":"invoke","f":"read","time":"noon"}', "jsonl", 1, "time"),
        (
            "[{:process 0 :type :invoke :f :read}\n {:process 0 :type :ok :f :read :value 1}\n",
            "edn",
            3,
            "closing",
        ),
        ("{:process 0 :type :invoke :f :read}\n{:process 0, :type :ok, :f}", "edn", 2, "even"),
        ("{:process 0 :type :invoke :f :read}\n[1 2]\n", "edn", 2, "operation map"),
        ("{:process 0 :type :invoke :f :read}\n{:process 0 :type :ok :f :read]\n", "edn", 2, "}"),
        ("INFO  jepsen.util - 0\t:invoke\t:read\tnil\ngarbage here\n", "jepsen-log", 2, "Jepsen"),
        ("INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2\n", "jepsen-log", 1, "]"),
        ("hello world\n", "auto", 1, "JSON object"),
        ('{"process":0,"type":"ok","f":"read","value":1}\n', "jsonl", 1, "invocation"),
        (
            '{"process":0,"type":"invoke","f":"read"}\n{"process":0,"type":"ok","f":"write"}',
            "jsonl",
            2,
            "completion of 'read'",
        ),
    ],
)
def test_malformed_input_names_the_line(text: str, fmt: str, line: int, fragment: str) -> None:
    with pytest.raises(HistoryFormatError) as exc:
        parse_history(text, fmt).operations()
    assert exc.value.line == line
    assert f"line {line}" in str(exc.value)
    assert fragment in str(exc.value)


def test_model_mismatch_is_a_format_error() -> None:
    h = parse_history('{"process":0,"type":"invoke","f":"cas","value":[1,2]}\n')
    with pytest.raises(HistoryFormatError, match="cas-register"):
        check_history(h, "register")
    h = parse_history('{"process":0,"type":"invoke","f":"cas","value":3}\n')
    with pytest.raises(HistoryFormatError, match=r"line 1: expected a cas value"):
        check_history(h, "cas-register")


def _sample_events() -> list[Event]:
    return [
        Event(process=0, type="invoke", f="write", key="k1", value=5, time=10, index=0),
        Event(process="nemesis", type="info", f="start-partition", value=("n1", "n2"), time=11),
        Event(
            process=0,
            type="ok",
            f="write",
            key="k1",
            value=5,
            time=20,
            index=2,
            extra={"node": "n3", "consistency": "quorum"},
        ),
        Event(process=1, type="invoke", f="cas", key="k1", value=(5, 6), time=30, index=3),
        Event(
            process=1,
            type="info",
            f="cas",
            key="k1",
            value=(5, 6),
            time=40,
            index=4,
            error="timeout",
        ),
        Event(process=2, type="invoke", f="read", key="k 2", value=None, time=50, index=5),
        Event(
            process=2,
            type="ok",
            f="read",
            key="k 2",
            value='quote " and \\ slash',
            time=60,
            index=6,
        ),
    ]


def _strip(events: list[Event]) -> list[tuple[object, ...]]:
    return [
        (e.process, e.type, e.f, e.key, e.value, e.time, e.error, dict(e.extra)) for e in events
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "edn"])
def test_writers_round_trip(tmp_path: Path, fmt: str) -> None:
    events = _sample_events()
    path = tmp_path / f"history.{fmt}"
    save_history(events, path)
    back = load_history(path)
    assert back.format == fmt
    assert _strip(back.events) == _strip(events)


def test_edn_output_is_read_by_edn_format() -> None:
    buf = io.StringIO()
    dump_edn(_sample_events(), buf)
    text = buf.getvalue()
    parsed = [edn_format.loads(line) for line in text.splitlines()]
    assert parsed[0][edn_format.Keyword("f")] == edn_format.Keyword("write")
    assert parsed[1][edn_format.Keyword("process")] == edn_format.Keyword("nemesis")
    assert parsed[6][edn_format.Keyword("value")] == 'quote " and \\ slash'


def test_jsonl_writer_streams_and_assigns_indices(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with JsonlWriter(str(path)) as w:
        w.write(Event(process=0, type="invoke", f="write", key="a", value=1, time=1))
        assert path.read_text().count("\n") == 1  # flushed per line
        w.write(Event(process=0, type="ok", f="write", key="a", value=1, time=2))
    h = load_history(path)
    assert [e.index for e in h.events] == [0, 1]
    buf = io.StringIO()
    dump_jsonl(h.events, buf)
    assert buf.getvalue() == path.read_text()
