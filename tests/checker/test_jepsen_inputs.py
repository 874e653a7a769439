"""What real Jepsen and Knossos histories contain, read and checked as Jepsen would.

Each feature has hand-made histories whose verdict flips if the feature is missing:
independent `[k v]` tuples split into one register per key (and the project's own `key`
field); Knossos's tabular `[process type f value]` lines; `--initial` and Knossos's rule
for a read of nil; nemesis ops recognised by process, never by `f`; `info` and
never-completed ops indeterminate; `1`, `"1"`, `:a` and `"a"` all distinct values;
`time` that goes backwards (file order decides); and the `--edn` result map.
"""

from __future__ import annotations

import contextlib
import io
import json
import operator
from pathlib import Path
from typing import Any

import edn_format
import pytest

from kvstore.checker import (
    CAS_REGISTER,
    KV,
    REGISTER,
    HistoryFormatError,
    check_history,
    check_operations,
    dump_edn,
    dump_jsonl,
    parse_history,
)
from kvstore.checker.__main__ import main
from kvstore.checker.cli import parse_initial
from kvstore.checker.formats import sniff_format
from kvstore.checker.formats.edn import Keyword, KeywordValue, Symbol, SymbolValue
from kvstore.checker.history import FrozenMap, detect_key_encoding
from kvstore.checker.models import register_model, with_initial, with_nil_read

K = edn_format.Keyword


def _run(tmp_path: Path, name: str, text: str, *args: str) -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path), *args])
    return code, out.getvalue(), err.getvalue()


def _edn(tmp_path: Path, name: str, text: str, *args: str) -> tuple[int, Any]:
    code, out, err = _run(tmp_path, name, text, "--edn", *args)
    assert err == "", err
    return code, edn_format.loads(out)


def _verdict(text: str, fmt: str = "auto", model: str | None = None) -> str:
    return check_history(parse_history(text, fmt), model).verdict


def _ops(rows: list[str]) -> str:
    return "".join(f"{{{r}}}\n" for r in rows)


# ------------------------------------------------------------ 1. independent [k v] tuples

# Per key this is linearizable; as one register holding tuples it is not (the read of
# [1 1] begins after the write of [2 2] completed).
INDEPENDENT = _ops(
    [
        ":process 0, :type :invoke, :f :write, :value [1 1]",
        ":process 0, :type :ok, :f :write, :value [1 1]",
        ":process 1, :type :invoke, :f :write, :value [2 2]",
        ":process 1, :type :ok, :f :write, :value [2 2]",
        ":process 2, :type :invoke, :f :read, :value [1 nil]",
        ":process 2, :type :ok, :f :read, :value [1 1]",
        ":process 3, :type :invoke, :f :cas, :value [2 [2 5]]",
        ":process 3, :type :ok, :f :cas, :value [2 [2 5]]",
        ":process 2, :type :invoke, :f :read, :value [2 nil]",
        ":process 2, :type :ok, :f :read, :value [2 5]",
    ]
)


def test_independent_tuples_are_one_register_per_key() -> None:
    h = parse_history(INDEPENDENT)
    assert h.key_encoding == "independent"
    ops = h.operations()
    assert [(o.key, o.f, o.input, o.output) for o in ops] == [
        (1, "write", 1, 1),
        (2, "write", 2, 2),
        (1, "read", None, 1),
        (2, "cas", (2, 5), (2, 5)),
        (2, "read", None, 5),
    ]
    assert h.events[0].value == (1, 1)  # events keep the tuple as recorded
    res = check_history(h)
    assert res.verdict == "linearizable"
    assert res.model == "cas-register"
    assert [p.key for p in res.partitions] == [1, 2]


def test_independent_violation_is_reported_for_its_key_only() -> None:
    bad = INDEPENDENT.replace(":ok, :f :read, :value [2 5]", ":ok, :f :read, :value [2 2]")
    res = check_history(parse_history(bad))
    assert res.verdict == "not linearizable"
    assert {p.key: p.verdict for p in res.partitions} == {
        1: "linearizable",
        2: "not linearizable",
    }
    (ce,) = res.counterexamples
    assert ce.key == 2 and ce.blocked.output == 2 and ce.prefix_state == 5


def test_independent_in_json_lines_and_jepsen_logs() -> None:
    jsonl = (
        '{"process":0,"type":"invoke","f":"write","value":["x",1]}\n'
        '{"process":0,"type":"ok","f":"write","value":["x",1]}\n'
        '{"process":1,"type":"invoke","f":"write","value":["y",2]}\n'
        '{"process":1,"type":"ok","f":"write","value":["y",2]}\n'
        '{"process":2,"type":"invoke","f":"read","value":["x",null]}\n'
        '{"process":2,"type":"ok","f":"read","value":["x",1]}\n'
    )
    h = parse_history(jsonl)
    assert h.key_encoding == "independent"
    assert check_history(h).verdict == "linearizable"
    log = (
        "INFO  jepsen.util - 0\t:invoke\t:write\t[7 1]\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t[7 1]\n"
        "INFO  jepsen.util - 1\t:invoke\t:cas\t[8 [nil 3]]\n"
        "INFO  jepsen.util - 1\t:fail\t:cas\t[8 [nil 3]]\n"
    )
    h = parse_history(log)
    assert h.key_encoding == "independent"
    # A jepsen-log :fail :cas returned false: key 8 starts at nil, so that is impossible.
    res = check_history(h)
    assert {p.key: p.verdict for p in res.partitions} == {7: "linearizable", 8: "not linearizable"}


def test_key_field_encoding_wins_and_its_values_are_not_split() -> None:
    text = _ops(
        [
            ':process 0, :type :invoke, :f :write, :key "k", :value [1 2]',
            ':process 0, :type :ok, :f :write, :key "k", :value [1 2]',
            ':process 1, :type :invoke, :f :read, :key "k", :value [1 nil]',
            ':process 1, :type :ok, :f :read, :key "k", :value [1 2]',
        ]
    )
    h = parse_history(text)
    assert h.key_encoding == "key-field"
    res = check_history(h)
    assert [p.key for p in res.partitions] == ["k"]
    assert res.partitions[0].ops[0].input == (1, 2)
    # The read's invocation value is ignored; its completion's [1 2] is what was read.
    assert res.verdict == "linearizable"


@pytest.mark.parametrize(
    ("rows", "encoding"),
    [
        # A plain cas-register history: [from to] on every op, but v is no [from to].
        ([":process 0, :type :invoke, :f :cas, :value [1 2]"], "none"),
        # Read invocations without a tuple: a register whose values happen to be pairs.
        (
            [
                ":process 0, :type :invoke, :f :write, :value [1 2]",
                ":process 1, :type :invoke, :f :read, :value nil",
            ],
            "none",
        ),
        # A first element that is no key (a map, nil, a boolean).
        ([":process 0, :type :invoke, :f :write, :value [{:a 1} 2]"], "none"),
        ([":process 0, :type :invoke, :f :write, :value [nil 2]"], "none"),
        ([":process 0, :type :invoke, :f :write, :value [true 2]"], "none"),
        # Keys may be integers, strings or keywords; nemesis values do not count.
        (
            [
                ":process :nemesis, :type :info, :f :start, :value :partition",
                ":process 0, :type :invoke, :f :write, :value [:a 2]",
                ':process 1, :type :invoke, :f :cas, :value ["b" [1 2]]',
            ],
            "independent",
        ),
        # A single :key field anywhere makes it the project's encoding.
        (
            [
                ":process 0, :type :invoke, :f :write, :value [1 2]",
                ":process 1, :type :invoke, :f :write, :key 1, :value [1 2]",
            ],
            "key-field",
        ),
        ([":process :nemesis, :type :info, :f :start, :value [1 2]"], "none"),
    ],
)
def test_key_encoding_detection(rows: list[str], encoding: str) -> None:
    assert detect_key_encoding(parse_history(_ops(rows)).events) == encoding


def test_independent_completion_of_another_key_is_bad_input() -> None:
    text = _ops(
        [
            ":process 0, :type :invoke, :f :read, :value [1 nil]",
            ":process 0, :type :ok, :f :read, :value [2 5]",
        ]
    )
    with pytest.raises(
        HistoryFormatError, match=r"line 2: expected a \[key value\] tuple of key 1"
    ):
        parse_history(text).operations()


def test_independent_info_and_fail_completions_without_a_tuple() -> None:
    text = _ops(
        [
            ":process 0, :type :invoke, :f :write, :value [1 1]",
            ":process 0, :type :info, :f :write, :error :timeout",
            ":process 1, :type :invoke, :f :write, :value [1 2]",
            ":process 1, :type :fail, :f :write, :value :refused",
            ":process 2, :type :invoke, :f :read, :value [1 nil]",
            ":process 2, :type :ok, :f :read, :value [1 1]",
        ]
    )
    ops = parse_history(text).operations()
    assert [(o.key, o.status, o.input, o.output) for o in ops] == [
        (1, "info", 1, None),
        (1, "fail", 2, None),
        (1, "ok", None, 1),
    ]
    assert check_history(parse_history(text)).verdict == "linearizable"


def test_cli_states_the_keys_found(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, "h.edn", INDEPENDENT)
    assert code == 0
    assert "keys: 2 by Jepsen independent [k v] tuples: 1, 2" in out
    code, out, _ = _run(tmp_path, "h.edn", INDEPENDENT, "--json")
    data = json.loads(out)
    assert (data["key_encoding"], data["keys"]) == ("independent", [1, 2])
    keyed = '{"process":0,"type":"invoke","f":"write","key":"a","value":1}\n'
    code, out, _ = _run(tmp_path, "k.jsonl", keyed)
    assert "keys: 1 by the key field: a" in out
    code, out, _ = _run(tmp_path, "k.jsonl", keyed, "--json")
    assert json.loads(out)["key_encoding"] == "key-field"
    plain = '{"process":0,"type":"invoke","f":"write","value":1}\n'
    code, out, _ = _run(tmp_path, "p.jsonl", plain)
    assert "keys:" not in out
    assert json.loads(_run(tmp_path, "p.jsonl", plain, "--json")[1])["keys"] == []


# ------------------------------------------------------------- 2. Knossos tabular vectors

TABULAR = """[0 :invoke :write 3]
[0 :ok :write 3]
[:nemesis :info :start nil]
[1 :invoke :read nil 17]
[1 :ok :read 3 18]
[2 :invoke :write 4]
[2 :ok :write 4]
[1 :invoke :read nil]
[1 :ok :read 3]
"""


def test_tabular_lines_are_sniffed_and_read() -> None:
    assert sniff_format(TABULAR) == "knossos"
    assert sniff_format('["p1" :invoke :read nil]\n') == "knossos"
    assert sniff_format("[{:process 0, :type :invoke, :f :read}]\n") == "edn"
    assert sniff_format("[\n{:process 0}]\n") == "edn"
    h = parse_history(TABULAR)
    assert h.format == "knossos"
    ev = h.events[3]
    assert (ev.process, ev.type, ev.f, ev.value, ev.line) == (1, "invoke", "read", None, 4)
    assert ev.extra == {"fifth": 17}  # kept, not interpreted: no time, no index
    assert ev.time is None and ev.index is None
    assert h.events[2].is_nemesis
    # The last read returns 3 after the write of 4 completed.
    assert check_history(h).verdict == "not linearizable"
    assert _verdict(TABULAR.replace("[1 :ok :read 3]\n", "[1 :ok :read 4]\n")) == "linearizable"


def test_tabular_in_any_mix_and_as_one_vector() -> None:
    mixed = "[0 :invoke :write 1]\n{:process 0, :type :ok, :f :write, :value 1}\n"
    assert len(parse_history(mixed).operations()) == 1
    one_vector = "[[0 :invoke :write 1]\n [0 :ok :write 1]\n [1 :invoke :read nil]]\n"
    h = parse_history(one_vector)
    assert h.format == "edn"
    assert [(o.f, o.status, o.line) for o in h.operations()] == [
        ("write", "ok", 1),
        ("read", "info", 3),
    ]
    # The explicit edn format reads the tabular shape too.
    assert parse_history(TABULAR, "edn").events == parse_history(TABULAR, "knossos").events


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[0 :invoke :write 1]\n[0 :ok :write]\n", 2, "[process type f value]"),
        ("[0 :invoke :write 1]\n[0 :ok :write 1 2 3]\n", 2, "[process type f value]"),
        ("[0 :begin :write 1]\n", 1, ":type :invoke"),
        ("[[1] :invoke :write 1]\n", 1, ":process"),
        ("[0 :invoke 7 1]\n", 1, ":f as a keyword"),
        ("[0 :invoke :write 1\n", 2, "']' to close '[' opened on line 1"),
    ],
)
def test_malformed_tabular_lines_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(HistoryFormatError) as exc:
        parse_history(text).operations()
    assert exc.value.line == line
    assert fragment in str(exc.value)


def test_tabular_file_through_the_cli(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "knossos.edn", TABULAR)
    assert (code, err) == (1, "")
    assert "format knossos" in out
    assert _run(tmp_path, "bad.edn", "[0 :invoke]\n")[0] == 2


# -------------------------------------------------------- 3. --initial and reads of nil

# A cas-register that starts at 0, as Knossos's cas-register test data does.
FROM_ZERO = _ops(
    [
        ":process 0, :type :invoke, :f :read, :value nil",
        ":process 0, :type :ok, :f :read, :value 0",
        ":process 1, :type :invoke, :f :cas, :value [0 2]",
        ":process 1, :type :ok, :f :cas, :value [0 2]",
    ]
)


def test_initial_value(tmp_path: Path) -> None:
    assert _verdict(FROM_ZERO) == "not linearizable"  # default nil
    h = parse_history(FROM_ZERO)
    assert check_history(h, with_initial(CAS_REGISTER, 0)).verdict == "linearizable"
    assert _run(tmp_path, "h.edn", FROM_ZERO)[0] == 1
    code, out, _ = _run(tmp_path, "h.edn", FROM_ZERO, "--initial", "0")
    assert code == 0 and "register starts at 0" in out
    code, out, _ = _run(tmp_path, "h.edn", FROM_ZERO, "--initial", "0", "--model", "register")
    assert code == 2 and out == ""  # cas is not a register op: bad input
    strings = FROM_ZERO.replace(":value 0}", ':value "s"}').replace("[0 2]", '["s" 2]')
    assert _run(tmp_path, "s.edn", strings, "--initial", '"s"')[0] == 0
    assert _run(tmp_path, "s.edn", strings, "--initial", ":s")[0] == 1  # :s is not "s"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("nil", None),
        ("null", None),
        ('"a b"', "a b"),
        (":a", KeywordValue("a")),
        ("[1 [2 3]]", (1, (2, 3))),
        ("{:a 1}", FrozenMap([(KeywordValue("a"), 1)])),
        ("-1.5", -1.5),
    ],
)
def test_parse_initial(text: str, value: Any) -> None:
    got = parse_initial(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("abc", "EDN symbol"), ("[1", "not one EDN value"), ("1 2", "not one EDN value")],
)
def test_bad_initial_is_a_usage_error(tmp_path: Path, value: str, fragment: str) -> None:
    code, out, err = _run(tmp_path, "h.edn", FROM_ZERO, "--initial", value)
    assert code == 2 and out == ""
    assert err.startswith("kvstore check: error: --initial") and fragment in err


def test_initial_for_kv_is_a_usage_error(tmp_path: Path) -> None:
    kv = '{:process 0, :type :invoke, :f :put, :key "a", :value "x"}\n'
    code, _, err = _run(tmp_path, "kv.edn", kv, "--initial", "0")
    assert code == 2 and "register and cas-register models, not kv" in err
    with pytest.raises(ValueError, match="not kv"):
        with_initial(KV, 0)


def test_help_states_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--initial VALUE" in text and "(default: nil" in text
    assert "--nil-read {unknown,value}" in text
    assert "Default: unknown for edn and knossos histories, value for jsonl" in text


# The read of nil begins after the write of 1 completed.
NIL_AFTER_WRITE = _ops(
    [
        ":process 0, :type :invoke, :f :write, :value 1",
        ":process 0, :type :ok, :f :write, :value 1",
        ":process 1, :type :invoke, :f :read, :value nil",
        ":process 1, :type :ok, :f :read, :value nil",
    ]
)
NIL_AFTER_WRITE_JSONL = (
    '{"process":0,"type":"invoke","f":"write","value":1}\n'
    '{"process":0,"type":"ok","f":"write","value":1}\n'
    '{"process":1,"type":"invoke","f":"read","value":null}\n'
    '{"process":1,"type":"ok","f":"read","value":null}\n'
)


def test_a_read_of_nil_follows_knossos_in_edn_histories(tmp_path: Path) -> None:
    # Knossos's register: (nil? (:value op)) means "we don't know what the read was".
    h = parse_history(NIL_AFTER_WRITE)
    assert h.nil_read_is_unknown
    assert check_history(h).verdict == "linearizable"
    assert check_history(h, "cas-register").verdict == "linearizable"
    tabular = "[0 :invoke :write 1]\n[0 :ok :write 1]\n[1 :invoke :read nil]\n[1 :ok :read nil]\n"
    assert _verdict(tabular) == "linearizable"
    # Under the strict rule nil is a value: the register held 1.
    assert check_history(h, register_model(nil_read="value")).verdict == "not linearizable"
    assert _run(tmp_path, "h.edn", NIL_AFTER_WRITE, "--nil-read", "value")[0] == 1
    code, out, _ = _run(tmp_path, "h.edn", NIL_AFTER_WRITE)
    assert code == 0 and "a read of nil is unknown (Knossos's rule" in out


def test_a_read_of_nil_is_the_value_nil_in_json_lines_and_logs(tmp_path: Path) -> None:
    # This store returns nil for an absent key; Porcupine's etcd model reads nil so too.
    h = parse_history(NIL_AFTER_WRITE_JSONL)
    assert not h.nil_read_is_unknown
    assert check_history(h).verdict == "not linearizable"
    log = (
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
        "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 1\t:ok\t:read\tnil\n"
    )
    assert _verdict(log) == "not linearizable"
    assert _run(tmp_path, "h.jsonl", NIL_AFTER_WRITE_JSONL, "--nil-read", "unknown")[0] == 0
    code, out, _ = _run(tmp_path, "h.jsonl", NIL_AFTER_WRITE_JSONL)
    assert code == 1 and "a read of nil is the value nil" in out


def test_nil_read_rule_resolution() -> None:
    assert REGISTER.nil_read == "auto" and KV.nil_read is None
    assert with_nil_read(REGISTER, True).nil_read == "unknown"
    assert with_nil_read(with_initial(CAS_REGISTER, 0), False).init() == 0
    explicit = register_model(nil_read="value")
    assert with_nil_read(explicit, True) is explicit
    assert with_nil_read(KV, True) is KV
    # Without a history, "auto" is the strict rule.
    ops = parse_history(NIL_AFTER_WRITE).operations()
    assert check_operations(ops, "register").verdict == "not linearizable"
    with pytest.raises(ValueError, match="nil_read"):
        register_model(nil_read="maybe")


# ------------------------------------------- 4. nemesis by process; info is indeterminate


def test_nemesis_ops_are_recognised_by_process_never_by_f() -> None:
    rows = [
        ":process 0, :type :invoke, :f :write, :value 1",
        ":process 0, :type :ok, :f :write, :value 1",
        # Were these a client read, the read of 5 would be a violation.
        ":process :nemesis, :type :invoke, :f :read, :value nil",
        ":process :nemesis, :type :ok, :f :read, :value 5",
        ":process :nemesis, :type :info, :f :write, :value 7",
        ":process 1, :type :invoke, :f :read, :value nil",
        ":process 1, :type :ok, :f :read, :value 1",
    ]
    h = parse_history(_ops(rows))
    assert [o.process for o in h.operations()] == [0, 1]
    assert check_history(h).verdict == "linearizable"
    assert _verdict(_ops(rows).replace(":nemesis", '"nemesis"')) == "linearizable"
    tabular = "[0 :invoke :write 1]\n[0 :ok :write 1]\n[:nemesis :invoke :read nil]\n"
    assert len(parse_history(tabular + "[:nemesis :ok :read 5]\n").operations()) == 1
    jsonl = '{"process":"nemesis","type":"info","f":"read","value":5}\n'
    assert parse_history(jsonl).operations() == []


def test_a_client_op_named_like_a_fault_is_still_a_client_op() -> None:
    text = _ops([":process 0, :type :invoke, :f :start, :value nil"])
    with pytest.raises(HistoryFormatError, match="'start'"):
        check_history(parse_history(text))


def test_info_and_never_completed_ops_are_indeterminate() -> None:
    def history(completion: str, read: int) -> str:
        rows = [
            ":process 0, :type :invoke, :f :write, :value 1",
            ":process 0, :type :ok, :f :write, :value 1",
            ":process 1, :type :invoke, :f :write, :value 2",
            completion,
            ":process 2, :type :invoke, :f :read, :value nil",
            f":process 2, :type :ok, :f :read, :value {read}",
            ":process 2, :type :invoke, :f :read, :value nil",
            f":process 2, :type :ok, :f :read, :value {read}",
        ]
        return _ops([r for r in rows if r])

    info = ":process 1, :type :info, :f :write, :value 2, :error :timeout"
    for completion in (info, ""):  # an info completion, or none at all
        for read in (1, 2):  # the write of 2 may have happened, or not
            h = parse_history(history(completion, read))
            assert [o.status for o in h.operations()][1] == "info"
            assert check_history(h).verdict == "linearizable"
    # But it cannot have happened before it was invoked: a read of 2 that completed
    # before the write of 2 was invoked is a violation.
    early = _ops(
        [
            ":process 2, :type :invoke, :f :read, :value nil",
            ":process 2, :type :ok, :f :read, :value 2",
            ":process 1, :type :invoke, :f :write, :value 2",
            info,
        ]
    )
    assert _verdict(early) == "not linearizable"


def test_an_info_read_is_dropped() -> None:
    text = _ops(
        [
            ":process 0, :type :invoke, :f :write, :value 1",
            ":process 0, :type :ok, :f :write, :value 1",
            ":process 1, :type :invoke, :f :read, :value nil",
            ":process 1, :type :info, :f :read, :value 99",
        ]
    )
    assert _verdict(text) == "linearizable"


# -------------------------------------------------- 5. 1, "1", :a and "a" are distinct


def _write_then_read(write: str, read: str, extra: str = "") -> str:
    return _ops(
        [
            f":process 0, :type :invoke, :f :write, {extra}:value {write}",
            f":process 0, :type :ok, :f :write, {extra}:value {write}",
            f":process 1, :type :invoke, :f :read, {extra}:value nil",
            f":process 1, :type :ok, :f :read, {extra}:value {read}",
        ]
    )


@pytest.mark.parametrize(
    ("write", "read", "verdict"),
    [
        ("1", '"1"', "not linearizable"),
        ('"1"', "1", "not linearizable"),
        (":a", '"a"', "not linearizable"),
        ('"a"', ":a", "not linearizable"),
        (":a", "a", "not linearizable"),  # a symbol is neither
        ("a", "a", "linearizable"),
        (":a", ":a", "linearizable"),
        ('"a"', '"a"', "linearizable"),
        ("[:a 1]", '["a" 1]', "not linearizable"),
        ("{:a 1}", '{"a" 1}', "not linearizable"),
        ("{:a 1, :b 2}", "{:b 2, :a 1}", "linearizable"),
        ("#{:a}", '#{"a"}', "not linearizable"),
    ],
)
def test_values_keep_their_type(write: str, read: str, verdict: str) -> None:
    assert _verdict(_write_then_read(write, read)) == verdict
    # Under the project's key field, and under independent tuples.
    assert _verdict(_write_then_read(write, read, ':key "k", ')) == verdict
    ind = _write_then_read(f"[0 {write}]", f"[0 {read}]").replace("[0 nil]", "nil")
    ind = ind.replace(":read, :value nil", ":read, :value [0 nil]")
    assert parse_history(ind).key_encoding == "independent"
    assert _verdict(ind) == verdict


def test_ints_and_strings_in_json_lines() -> None:
    text = (
        '{"process":0,"type":"invoke","f":"write","value":1}\n'
        '{"process":0,"type":"ok","f":"write","value":1}\n'
        '{"process":1,"type":"invoke","f":"read","value":null}\n'
        '{"process":1,"type":"ok","f":"read","value":"1"}\n'
    )
    assert _verdict(text) == "not linearizable"
    assert _verdict(text.replace('"1"}', "1}")) == "linearizable"


def test_keyword_and_string_keys_are_different_keys() -> None:
    text = _write_then_read("1", "1", ":key :k, ").replace(":read, :key :k", ':read, :key "k"')
    res = check_history(parse_history(text))
    assert len(res.partitions) == 2
    # The read of key "k" returns 1, which nobody wrote there.
    assert res.verdict == "not linearizable"


def test_keyword_values_compare_as_keywords_only() -> None:
    a = KeywordValue("a")
    assert a == Keyword("a") and Keyword("a") == a and a == KeywordValue("a")
    # Both ways round: "a" == a must use KeywordValue's reflected __eq__.
    assert a != "a" and operator.ne("a", a) and hash(a) == hash(Keyword("a"))
    assert SymbolValue("a") != "a" and SymbolValue("a") == Symbol("a")
    assert SymbolValue("a") != a
    assert repr(a) == ":a" and repr(SymbolValue("s")) == "s"
    # Field names and f stay plain keywords, equal to their strings.
    ev = parse_history("{:process 0, :type :invoke, :f :write, :value :a}\n").events[0]
    assert ev.f == "write" and type(ev.f) is str
    assert type(ev.value) is KeywordValue


def test_keyword_values_survive_writing_edn() -> None:
    h = parse_history(_write_then_read(":a", "{:b #{:c}}"))
    buf = io.StringIO()
    dump_edn(h.events, buf)
    assert ":value :a" in buf.getvalue() and "{:b #{:c}}" in buf.getvalue()
    assert parse_history(buf.getvalue()).events == h.events


def test_map_values_round_trip_through_both_writers() -> None:
    h = parse_history(_write_then_read('{:a 1, "b" [2]}', '{:a 1, "b" [2]}'))
    buf = io.StringIO()
    dump_edn(h.events, buf)
    back = parse_history(buf.getvalue())
    assert back.events[0].value == h.events[0].value
    assert isinstance(back.events[0].value, FrozenMap)
    buf = io.StringIO()
    dump_jsonl(h.events, buf)
    first = json.loads(buf.getvalue().splitlines()[0])
    assert first["value"] == {"a": 1, "b": [2]}  # JSON has no keywords
    assert isinstance(parse_history(buf.getvalue()).events[0].value, FrozenMap)
    assert check_history(back).verdict == "linearizable"


def test_infinite_floats_are_written_as_edn() -> None:
    h = parse_history(_write_then_read("1e999", "##Inf"))
    assert h.events[0].value == float("inf")
    buf = io.StringIO()
    dump_edn(h.events, buf)
    assert ":value ##Inf" in buf.getvalue()
    assert parse_history(buf.getvalue()).events[0].value == float("inf")
    assert check_history(h).verdict == "linearizable"


# --------------------------------------------------- 6. time that goes backwards


def test_time_going_backwards_is_tolerated_and_file_order_decides() -> None:
    # By file order the read begins after the write of 2 completed; by time it would
    # come first (times 5..6 before 30..40) and could read the initial nil.
    text = (
        '{"process":0,"type":"invoke","f":"write","value":2,"time":30}\n'
        '{"process":0,"type":"ok","f":"write","value":2,"time":40}\n'
        '{"process":1,"type":"invoke","f":"read","value":null,"time":5}\n'
        '{"process":1,"type":"ok","f":"read","value":null,"time":6}\n'
    )
    h = parse_history(text)
    assert [e.time for e in h.events] == [30, 40, 5, 6]  # not reordered
    assert check_history(h).verdict == "not linearizable"
    edn = _ops(
        [
            ":process 0, :type :invoke, :f :write, :value 1, :time 900",
            ":process 0, :type :ok, :f :write, :value 1, :time 1000",
            ":process 1, :type :invoke, :f :write, :value 2, :time 100",
            ":process 1, :type :ok, :f :write, :value 2, :time 50",
            ":process 2, :type :invoke, :f :read, :value nil, :time 10",
            ":process 2, :type :ok, :f :read, :value 1, :time 20",
        ]
    )
    assert _verdict(edn) == "not linearizable"  # write 1, then write 2, then read 1
    assert _verdict(edn.replace(":value 1, :time 20", ":value 2, :time 20")) == "linearizable"


def test_time_going_backwards_with_staleness(tmp_path: Path) -> None:
    text = (
        '{"process":0,"type":"invoke","f":"write","value":2,"time":30}\n'
        '{"process":0,"type":"ok","f":"write","value":2,"time":40}\n'
        '{"process":1,"type":"invoke","f":"read","value":null,"time":5}\n'
        '{"process":1,"type":"ok","f":"read","value":2,"time":6}\n'
    )
    code, _, err = _run(tmp_path, "h.jsonl", text, "--staleness")
    assert (code, err) == (0, "")


# -------------------------------------------------------------------- 7. --edn result


def test_edn_result_of_a_failure(tmp_path: Path) -> None:
    bad = INDEPENDENT.replace(":ok, :f :read, :value [2 5]", ":ok, :f :read, :value [2 2]")
    code, r = _edn(tmp_path, "h.edn", bad)
    assert code == 1
    assert r[K("valid?")] is False
    assert r[K("failures")] == [2]
    assert r[K("key-encoding")] == K("independent") and r[K("keys")] == [1, 2]
    assert r[K("model")] == K("cas-register") and r[K("initial")] is None
    assert r[K("nil-read")] == K("unknown")
    results = r[K("results")]
    assert results[1] == {K("valid?"): True, K("op-count"): 2}
    two = results[2]
    assert two[K("valid?")] is False
    # Knossos's :op: the completion no linearization reaches, as recorded (unwrapped).
    op = two[K("op")]
    assert (op[K("process")], op[K("type")], op[K("f")], op[K("value")], op[K("line")]) == (
        2,
        K("ok"),
        K("read"),
        2,
        10,
    )
    prev = two[K("previous-ok")]
    assert (prev[K("f")], prev[K("value")], prev[K("line")]) == (K("cas"), [2, 5], 8)
    (path,) = two[K("final-paths")]
    assert [s[K("model")] for s in path] == [
        {K("value"): 2},
        {K("value"): 5},
        {K("inconsistent"): "can't read 2 from register 5"},
    ]
    assert path[-1][K("op")] == op
    assert two[K("prefix-length")] == 2 and two[K("prefix-state")] == 5
    assert [o[K("line")] for o in two[K("failing-window")]] == [8, 10]


def test_edn_result_of_a_valid_single_register(tmp_path: Path) -> None:
    code, r = _edn(tmp_path, "h.edn", FROM_ZERO, "--initial", "0")
    assert code == 0
    assert r[K("valid?")] is True and r[K("failures")] == []
    assert r[K("results")] == {None: {K("valid?"): True, K("op-count"): 2}}
    assert r[K("initial")] == 0 and r[K("key-encoding")] == K("none")
    assert r[K("format")] == K("edn")


def test_edn_result_unknown_and_staleness(tmp_path: Path) -> None:
    code, r = _edn(tmp_path, "h.edn", INDEPENDENT, "--time-limit", "1e-9")
    assert code == 3
    assert r[K("valid?")] == K("unknown")
    assert r[K("failures")] == []  # as in Jepsen, :unknown is not a failure
    assert r[K("results")][1] == {
        K("valid?"): K("unknown"),
        K("cause"): K("timeout"),
        K("op-count"): 2,
    }
    timed = NIL_AFTER_WRITE_JSONL.replace("}\n", ',"time":%d}\n') % (1, 2, 3, 4)
    code, r = _edn(tmp_path, "t.jsonl", timed, "--staleness")
    assert code == 1
    st = r[K("staleness")]
    assert st[K("stale-reads")] == 1 and st[K("k-staleness")] == {1: 1}


def test_edn_result_of_a_kv_history_and_messages(tmp_path: Path) -> None:
    kv = _ops(
        [
            ':process 0, :type :invoke, :f :put, :key "a", :value "x"',
            ':process 0, :type :ok, :f :put, :key "a", :value "x"',
            ':process 1, :type :invoke, :f :get, :key "a", :value nil',
            ':process 1, :type :ok, :f :get, :key "a", :value "y"',
        ]
    )
    code, r = _edn(tmp_path, "kv.edn", kv)
    assert code == 1 and K("initial") not in r and r[K("model")] == K("kv")
    assert r[K("failures")] == ["a"]
    (path,) = r[K("results")]["a"][K("final-paths")]
    assert path[-1][K("model")] == {K("inconsistent"): 'can\'t read "y" from register "x"'}
    assert path[-1][K("op")][K("key")] == "a"
    cas = FROM_ZERO.replace(":ok, :f :read, :value 0", ":ok, :f :read, :value nil")
    code, r = _edn(tmp_path, "cas.edn", cas, "--initial", "1")
    (path,) = r[K("results")][None][K("final-paths")]
    assert path[-1][K("model")] == {K("inconsistent"): "can't CAS 1 from 0 to 2"}


def test_edn_and_json_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, "h.edn", INDEPENDENT, "--edn", "--json")
    assert e.value.code == 2


def test_edn_previous_ok_is_the_latest_ok_completion_before_the_failure(
    tmp_path: Path,
) -> None:
    # The write of 5 is placed in the prefix (it is concurrent with the read), but it
    # completes after the failing read: Knossos's :previous-ok is the write of 1.
    text = _ops(
        [
            ":process 0, :type :invoke, :f :write, :value 1",
            ":process 0, :type :ok, :f :write, :value 1",
            ":process 1, :type :invoke, :f :read, :value nil",
            ":process 2, :type :invoke, :f :write, :value 5",
            ":process 1, :type :ok, :f :read, :value 7",
            ":process 2, :type :ok, :f :write, :value 5",
        ]
    )
    code, r = _edn(tmp_path, "h.edn", text)
    assert code == 1
    res = r[K("results")][None]
    # No :index in the file: ops are numbered by position, from 0, as in Knossos.
    assert (res[K("op")][K("index")], res[K("op")][K("value")]) == (4, 7)
    assert (res[K("previous-ok")][K("index")], res[K("previous-ok")][K("value")]) == (1, 1)


def test_edn_prints_an_indeterminate_op_as_its_info_completion(tmp_path: Path) -> None:
    text = _ops(
        [
            ":process 0, :type :invoke, :f :write, :value 1, :index 10",
            ":process 0, :type :info, :f :write, :value 1, :index 11, :error :timeout",
            ":process 1, :type :invoke, :f :write, :value 2, :index 12",
            ":process 2, :type :invoke, :f :read, :value nil, :index 13",
            ":process 2, :type :ok, :f :read, :value 1, :index 14",
            ":process 2, :type :invoke, :f :read, :value nil, :index 15",
            ":process 2, :type :ok, :f :read, :value 2, :index 16",
            ":process 2, :type :invoke, :f :read, :value nil, :index 17",
            ":process 2, :type :ok, :f :read, :value 3, :index 18",
        ]
    )
    code, r = _edn(tmp_path, "h.edn", text)
    assert code == 1
    res = r[K("results")][None]
    assert res[K("op")][K("index")] == 18
    assert res[K("previous-ok")][K("index")] == 16
    # The reads of 1 and 2 need both indeterminate writes in the prefix; the path shows
    # its last three steps. The never-completed write of 2 shows as its invocation.
    (path,) = res[K("final-paths")]
    assert [(s[K("op")][K("type")], s[K("op")][K("index")]) for s in path] == [
        (K("ok"), 14),
        (K("invoke"), 12),
        (K("ok"), 16),
        (K("ok"), 18),
    ]
    assert [s[K("model")] for s in path][:3] == [
        {K("value"): 1},
        {K("value"): 2},
        {K("value"): 2},
    ]
    # Read 2 before 1: the timed-out write of 1 is now in the path, as its :info
    # completion (as Knossos shows a crashed op).
    swapped = text.replace(":value 1, :index 14", ":value 9, :index 14")
    swapped = swapped.replace(":value 2, :index 16", ":value 1, :index 16")
    swapped = swapped.replace(":value 9, :index 14", ":value 2, :index 14")
    code, r = _edn(tmp_path, "swapped.edn", swapped)
    assert code == 1
    (path,) = r[K("results")][None][K("final-paths")]
    assert [(s[K("op")][K("type")], s[K("op")][K("index")]) for s in path][:3] == [
        (K("ok"), 14),
        (K("info"), 11),
        (K("ok"), 16),
    ]
    # The whole prefix starts with the write of 1, which timed out.
    (ce,) = check_history(parse_history(text), keep_going_s=0.0).counterexamples
    assert [(s.op.status, s.op.input) for s in ce.prefix] == [
        ("info", 1),
        ("ok", None),
        ("info", 2),
        ("ok", None),
    ]


def test_keys_are_listed_in_natural_order(tmp_path: Path) -> None:
    rows = []
    for k in (10, 2, 1):
        rows += [
            f":process {k}, :type :invoke, :f :write, :value [{k} 1]",
            f":process {k}, :type :ok, :f :write, :value [{k} 1]",
        ]
    text = _ops(rows)
    code, out, _ = _run(tmp_path, "h.edn", text)
    assert code == 0
    assert "keys: 3 by Jepsen independent [k v] tuples: 1, 2, 10" in out
    assert json.loads(_run(tmp_path, "h.edn", text, "--json")[1])["keys"] == [1, 2, 10]
    code, out, _ = _run(tmp_path, "h.edn", text, "--edn")
    assert code == 0
    assert out.index("1 {:valid?") < out.index("2 {:valid?") < out.index("10 {:valid?")
