"""Hostile and malformed history files: `kvstore check` says what is wrong, never crashes.

Rules checked here: every bad file exits 2 with exactly one stderr line of the form
`kvstore check: FILE:LINE: what is wrong` (`FILE: ...` when no line applies), never a
traceback and never exit 1 (which would claim "not linearizable"). The readers enforce
their limits themselves (depth, integer size, field types), raising HistoryFormatError
with the line, so the CLI's last-resort catches are only a backstop. Values that are
legal but awkward (maps, sets, maps inside vectors) are checked correctly instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstore.checker import HistoryFormatError, parse_history
from kvstore.checker import cli as check_cli
from kvstore.checker.__main__ import main
from kvstore.checker.formats.edn import read_forms
from kvstore.checker.history import MAX_DEPTH

DEEP = 100_000
INV = '{"process":0,"type":"invoke","f":"write","key":"a","value":%s}\n'
OK = '{"process":0,"type":"ok","f":"write","key":"a","value":%s}\n'
EDN_INV = "{:process 0 :type :invoke :f :write :key :a :value %s}\n"
LOG_INV = "INFO  jepsen.util - %s\t:invoke\t:write\t%s\n"
READ_INV = '{"process":1,"type":"invoke","f":"read","key":"a","value":null}\n'
READ_OK = '{"process":1,"type":"ok","f":"read","key":"a","value":%s}\n'
EDN_KEYED = "{:process %s :type :%s :f :write :key {[1 {:k 2}] 3} :value #{{:a 1} [1 {:b 2}]}}\n"
GOOD = INV % 1 + OK % 1


def _vec(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _run(path: Path | str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path), *extra])
    return code, out.getvalue(), err.getvalue()


def _assert_bad(path: Path | str, line: int | None, fragment: str, *extra: str) -> str:
    code, out, err = _run(path, *extra)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    (msg,) = err.splitlines()  # exactly one line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert msg.startswith(f"kvstore check: {where}"), msg
    assert fragment in msg, msg
    return msg


# (file name, content, line the problem is on or None, a fragment of the message)
CASES: list[tuple[str, str | bytes, int | None, str]] = [
    # Nesting: far past the recursion limit, and one level past MAX_DEPTH.
    ("deep_array.jsonl", GOOD + INV % _vec(DEEP), 3, f"nested at most {MAX_DEPTH} deep"),
    (
        "deep_object.jsonl",
        INV % ('{"a":' * DEEP + "1" + "}" * DEEP),
        1,
        f"nested at most {MAX_DEPTH} deep",
    ),
    ("deep_65.jsonl", INV % _vec(MAX_DEPTH + 1), 1, f"nested at most {MAX_DEPTH} deep"),
    ("deep_key.jsonl", INV.replace('"a"', _vec(MAX_DEPTH + 1)) % 1, 1, "nested at most"),
    ("deep_error.jsonl", GOOD + OK.replace("}\n", ',"error":%s}\n') % (1, _vec(200)), 3, "nested"),
    ("deep_extra.jsonl", INV.replace("}\n", ',"node":%s}\n') % (1, _vec(200)), 1, "nested"),
    ("deep_vectors.edn", EDN_INV % _vec(DEEP), 1, f"nested at most {MAX_DEPTH} deep"),
    ("deep_maps.edn", EDN_INV % ("{:a " * DEEP + "1" + "}" * DEEP), 1, "nested at most"),
    ("deep_sets.edn", EDN_INV % ("#{" * DEEP + "1" + "}" * DEEP), 1, "nested at most"),
    ("deep_65.edn", "\n" + EDN_INV % _vec(MAX_DEPTH + 1), 2, "nested at most"),
    ("deep_65_in_vector.edn", "[\n" + EDN_INV % _vec(MAX_DEPTH + 1) + "]\n", 2, "nested"),
    ("deep_unterminated.edn", "[" * DEEP, 1, "nested at most"),
    ("deep_value.log", LOG_INV % (0, _vec(DEEP)), 1, "nested at most"),
    ("deep_65_value.log", LOG_INV % (0, _vec(MAX_DEPTH + 1)), 1, "nested at most"),
    ("discard_chain.edn", "#_" * DEEP + "1\n", 1, "a form after #_, found end of file"),
    # Huge numbers.
    ("big_int.jsonl", INV % ("9" * DEEP), 1, "digits"),
    ("big_time.jsonl", INV.replace("}\n", ',"time":%s}\n') % (1, "9" * 5000), 1, "digits"),
    ("big_int.edn", EDN_INV % ("9" * DEEP), 1, "digits"),
    ("big_intN.edn", EDN_INV % ("-" + "9" * DEEP + "N"), 1, "digits"),
    ("big_process.log", LOG_INV % ("9" * DEEP, 1), 1, "digits"),
    ("big_value.log", LOG_INV % (0, "9" * DEEP), 1, "digits"),
    ("inf_time.jsonl", INV.replace("}\n", ',"time":1e400}\n') % 1, 1, '"time" as a number'),
    ("inf_time.edn", EDN_INV.replace("}\n", " :time 1e999}\n") % 1, 1, ":time as a number"),
    ("time_2_63.jsonl", INV.replace("}\n", ',"time":%d}\n') % (1, 2**63), 1, "2**63-1"),
    ("nan.jsonl", INV % "NaN", 1, "found NaN"),
    ("infinity.jsonl", GOOD + INV % "-Infinity", 3, "found -Infinity"),
    # Bytes that are not text, or not history.
    ("binary.bin", bytes(range(256)) * 8, 2, "UTF-8"),
    ("bad_utf8.jsonl", GOOD.encode() + b'{"process":0,"value":"\xff\xfe"}\n', 3, "UTF-8"),
    ("overlong_utf8.edn", b"{:process 0 :f :read :type :invoke :value \xc0\xaf}\n", 1, "UTF-8"),
    ("nul.jsonl", GOOD + "\x00\x00\x00\n", 3, "invalid JSON"),
    ("nul_in_line.jsonl", INV % 1 + '{"process":0,\x00"type":"ok"}\n', 2, "invalid JSON"),
    ("nul.edn", EDN_INV % 1 + "\x00\n", 2, "operation map"),
    ("garbage.txt", "hello world\n", 1, "a JSON object, an EDN op map"),
    ("lone_close.edn", "}\n", 1, "found '}'"),
    # Nothing to check.
    ("empty.jsonl", "", None, "at least one event"),
    ("blank.jsonl", "\n  \n\t\n", None, "at least one event"),
    ("comments.edn", "; a comment\n;; another\n", None, "at least one event"),
    ("empty_vector.edn", "[]\n", None, "at least one event"),
    # Fields of the wrong type or range.
    ("process_list.jsonl", INV.replace('"process":0', '"process":[1,2]') % 1, 1, '"process"'),
    ("process_dict.jsonl", INV.replace('"process":0', '"process":{"a":1}') % 1, 1, "process"),
    ("process_bool.jsonl", INV.replace('"process":0', '"process":true') % 1, 1, "process"),
    ("process_vector.edn", EDN_INV.replace(":process 0", ":process [1 {:a 2}]") % 1, 1, "process"),
    ("time_string.jsonl", INV.replace("}\n", ',"time":"soon"}\n') % 1, 1, "'soon'"),
    ("time_string.edn", EDN_INV.replace("}\n", ' :time "soon"}\n') % 1, 1, "'soon'"),
    ("time_negative.jsonl", INV.replace("}\n", ',"time":-5}\n') % 1, 1, "found -5"),
    ("time_bool.edn", EDN_INV.replace("}\n", " :time true}\n") % 1, 1, "found True"),
    ("type_unknown.jsonl", INV.replace('"invoke"', '"maybe"') % 1, 1, "'maybe'"),
    ("type_unknown.edn", EDN_INV.replace(":invoke", ":maybe") % 1, 1, ":type"),
    ("type_list.jsonl", INV.replace('"invoke"', '["invoke"]') % 1, 1, '"type"'),
    ("index_negative.jsonl", INV.replace("{", '{"index":-1,', 1) % 1, 1, "found -1"),
    ("index_negative.edn", EDN_INV.replace("{", "{:index -1 ", 1) % 1, 1, "found -1"),
    ("index_bool.jsonl", INV.replace("{", '{"index":true,', 1) % 1, 1, '"index"'),
    ("index_float.edn", EDN_INV.replace("{", "{:index 1.5 ", 1) % 1, 1, ":index"),
    ("f_number.jsonl", INV.replace('"write"', "5") % 1, 1, '"f"'),
    ("f_number.edn", EDN_INV.replace(":write", "5") % 1, 1, ":f as a keyword"),
    ("f_unknown.jsonl", INV.replace('"write"', '"launch"') % 1, 1, "'launch'"),
    ("not_a_map.edn", EDN_INV % 1 + "[1 2 3]\n", 2, "operation map"),
    ("odd_map.edn", "{:process 0 :type}\n", 1, "even number"),
    # EDN syntax: unterminated forms, tags and discards with nothing after them.
    ("unterminated_string.edn", EDN_INV % 1 + EDN_INV % '"abc', 2, "closing '\"'"),
    ("unterminated_vector.edn", EDN_INV[:-2] % "[1 2\n", 2, "']' to close '[' opened on line 1"),
    ("wrong_closer.edn", EDN_INV % "[1 2}", 1, "expected ']', found '}'"),
    ("unterminated_history.edn", "[" + EDN_INV % 1, 2, "closing bracket"),
    ("history_wrong_closer.edn", "[" + EDN_INV % 1 + ")\n", 2, "expected ']', found ')'"),
    ("tag_at_end.edn", EDN_INV % 1 + "#foo\n", 2, "a form after #foo, found end of file"),
    ("tag_before_close.edn", EDN_INV % "[1 #foo]", 1, "a form after #foo, found ']'"),
    ("discard_before_close.edn", EDN_INV % "[1 #_]", 1, "a form after #_"),
    ("bad_unicode_escape.edn", EDN_INV % '"\\uZZZZ"', 1, "four hex digits"),
    ("short_unicode_escape.edn", EDN_INV % '"\\u12"', 1, "four hex digits"),
    ("bad_escape.log", LOG_INV % (0, '"\\u00"'), 1, "four hex digits"),
    ("unterminated.log", LOG_INV % (0, "[1 2"), 1, "']'"),
    # Pairing and model problems are bad input too.
    ("orphan_ok.jsonl", OK % 1, 1, "an invocation by process 0"),
    ("kv_map_value.jsonl", INV.replace('"write"', '"put"') % '{"a":1}', 1, "string value"),
]


@pytest.mark.parametrize(("name", "content", "line", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_bad_input(
    tmp_path: Path, name: str, content: str | bytes, line: int | None, fragment: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    _assert_bad(path, line, fragment)


def test_deep_nesting_is_refused_by_the_readers_themselves() -> None:
    # The CLI would also catch a RecursionError; the readers must not need it.
    for text, fmt in [
        (EDN_INV % _vec(DEEP), "edn"),
        (INV % _vec(DEEP), "jsonl"),
        (INV % _vec(MAX_DEPTH + 1), "jsonl"),
        (LOG_INV % (0, _vec(DEEP)), "jepsen-log"),
    ]:
        with pytest.raises(HistoryFormatError, match="nested at most") as exc:
            parse_history(text, fmt)
        assert exc.value.line == 1
    with pytest.raises(HistoryFormatError, match="nested at most"):
        read_forms(_vec(DEEP))


@pytest.mark.parametrize(
    "text",
    [
        INV % _vec(MAX_DEPTH) + OK % _vec(MAX_DEPTH),
        EDN_INV % _vec(MAX_DEPTH) + EDN_INV.replace(":invoke", ":ok") % _vec(MAX_DEPTH),
        "[" + EDN_INV % _vec(MAX_DEPTH) + EDN_INV.replace(":invoke", ":ok") % _vec(MAX_DEPTH) + "]",
        LOG_INV % (0, _vec(MAX_DEPTH)) + LOG_INV.replace(":invoke", ":ok") % (0, _vec(MAX_DEPTH)),
    ],
    ids=["jsonl", "edn-lines", "edn-vector", "jepsen-log"],
)
def test_nesting_up_to_the_limit_is_checked(tmp_path: Path, text: str) -> None:
    path = tmp_path / "h.txt"
    path.write_text(text)
    code, out, err = _run(path)
    assert (code, err) == (0, ""), err
    assert "LINEARIZABLE" in out


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _assert_bad(tmp_path / "missing.jsonl", None, "No such file or directory")
    # a folder is read as a Jepsen store folder: one without a history says so
    _assert_bad(tmp_path, None, "with none of them")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(GOOD)

    def refuse(self: pathlib.Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    # As root (CI) chmod does not stop a read, so the refusal is simulated.
    monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)
    _assert_bad(path, None, "Permission denied")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_for_real(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(GOOD)
    path.chmod(0)
    try:
        _assert_bad(path, None, "Permission denied")
    finally:
        path.chmod(0o600)


def test_html_report_path_that_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(GOOD)
    html = tmp_path / "no" / "r.html"
    code, out, err = _run(path, "--html", str(html))
    assert code == 2 and "Traceback" not in out + err
    assert err == f"kvstore check: {html}: No such file or directory\n"


def test_staleness_without_times_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(GOOD)
    _assert_bad(path, 1, "time fields", "--staleness")


@pytest.mark.parametrize(
    ("exc", "fragment"),
    [
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (MemoryError(), "out of memory"),
        (ValueError("something odd\nsecond line"), "ValueError: something odd\\nsecond line"),
        (OverflowError("int too large"), "OverflowError"),
    ],
)
def test_last_line_of_defence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, fragment: str
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(GOOD)

    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(check_cli, "check_history", explode)
    _assert_bad(path, None, fragment)


# --------------------------------------------------------------- awkward but legal values


def _history(write: str, read: str) -> str:
    return INV % write + OK % write + READ_INV + READ_OK % read


@pytest.mark.parametrize(
    ("write", "read", "expected"),
    [
        ('{"x":[1,{"y":2}],"b":null}', '{"b":null,"x":[1,{"y":2}]}', 0),
        ('{"x":1}', '{"x":2}', 1),
        # A map is not the list of its pairs: the read returned something never written.
        ('{"a":1}', '[["a",1]]', 1),
        ("[1,[2,3]]", "[1,[2,3]]", 0),
        ("[1,[2,3]]", "[1,[2,4]]", 1),
    ],
)
def test_map_and_list_register_values(tmp_path: Path, write: str, read: str, expected: int) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(_history(write, read))
    code, _, err = _run(path)
    assert (code, err) == (expected, "")


def test_map_keys_and_edn_sets_of_maps(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    ok = EDN_KEYED % (0, "invoke") + EDN_KEYED % (0, "ok")
    path.write_text(EDN_KEYED % ("[0]", "invoke") + ok)
    _assert_bad(path, 1, ":process as an integer or a string")
    path.write_text(ok)
    code, _, err = _run(path)
    assert (code, err) == (0, "")


def test_edn_prefixes_keep_their_meaning() -> None:
    # `#_` drops the next form (a tagged one included); tags are dropped, values kept.
    ((_, v),) = read_forms("[#_ #_ 1 2 3 #foo #_ 4 5 #_ #bar 6 7]")
    assert v == (3, 5, 7)
    ((_, v),) = read_forms("#a #b #c " * 1000 + "[1]")
    assert v == (1,)


def test_hostile_text_in_reports_is_escaped(tmp_path: Path) -> None:
    esc = "\\u001b]0;pwned\\u0007"
    path = tmp_path / "h.jsonl"
    path.write_text(
        _history('"v\\u001b[2J"', '"z\\ud800"').replace('"process":1', f'"process":"{esc}"')
    )
    html = tmp_path / "r.html"
    code, out, err = _run(path, "--html", str(html))
    assert code == 1 and err == ""
    assert "\x1b" not in out and "\x07" not in out
    assert "p'\\x1b]0;pwned\\x07' read('a') -> ok 'z\\ud800'" in out
    assert "\x1b" not in html.read_text(encoding="utf-8")


def test_file_name_with_undecodable_bytes(tmp_path: Path) -> None:
    # os.fsdecode turns the byte 0xff into a lone surrogate, which UTF-8 cannot encode.
    path = tmp_path / os.fsdecode(b"h\xff.jsonl")
    path.write_text(GOOD)
    code, out, err = _run(path)
    assert code == 0 and "h\\udcff.jsonl" in out
    code, out, err = _run(path, "--html", str(tmp_path / "r.html"))
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith(f"kvstore check: {tmp_path}/r.html: cannot write the report")


# ------------------------------------------------------------------------------ property

_TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b"(",
    b")",
    b"#{",
    b"#_",
    b"#inst",
    b'"',
    b"\\u",
    b"\\",
    b" ",
    b"\n",
    b";",
    b":process 0",
    b":type :invoke",
    b":type :ok",
    b":f :write",
    b":f :read",
    b":f :cas",
    b":value",
    b":time",
    b":index",
    b"-1",
    b"1e999",
    b"9" * 30,
    b"nil",
    b'{"process":0,"type":"invoke","f":"write","value":',
    b'{"process":0,"type":"ok","f":"read","value":',
    b'"time":',
    b"NaN",
    b"INFO  jepsen.util - 0\t:invoke\t:write\t",
    b"\x00",
    b"\xff",
    b"\xc3",
]
_HOSTILE_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(_TOKENS), max_size=60).map(b"".join),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_HOSTILE_BYTES)
def test_arbitrary_bytes_never_crash(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "history"
    path.write_bytes(data)
    code, out, err = _run(path, "--time-limit", "10")
    assert code in (0, 1, 2, 3)
    assert "Traceback" not in out + err
    if code == 2:
        (msg,) = err.splitlines()
        assert msg.startswith(f"kvstore check: {path}")
