"""``kvstore check FOLDER``: a Jepsen store folder, and Jepsen's tab-separated history.txt.

Jepsen writes each run to ``store/<test>/<time>/`` with ``history.edn``, ``history.txt``
(``jepsen.util/op->str``: process, type, f, value and an optional error, tab-separated)
and ``jepsen.log``, and links ``store/latest`` and ``store/<test>/latest`` to the last
run. Each history here has a verdict that flips if its lines are misread.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from kvstore.checker import HistoryFormatError, check_history, parse_history
from kvstore.checker.__main__ import main
from kvstore.checker.formats import sniff_format

# A stale read behind a nemesis op whose :f is :read and an indeterminate write with an
# error column: not linearizable (the read of 1 follows a completed write of 2).
STALE_TXT = (
    "0\t:invoke\t:write\t1\n"
    "0\t:ok\t:write\t1\n"
    ':nemesis\t:info\t:read\t"partition n1"\n'
    "1\t:invoke\t:write\t2\n"
    "1\t:ok\t:write\t2\n"
    "2\t:invoke\t:write\t3\n"
    "2\t:info\t:write\t3\tindeterminate: timed out after 5000 ms\n"
    "3\t:invoke\t:read\tnil\n"
    "3\t:ok\t:read\t1\n"
)
# The same ops, the read returning 2: linearizable.
FINE_TXT = STALE_TXT.replace("3\t:ok\t:read\t1", "3\t:ok\t:read\t2")
FINE_EDN = "\n".join(
    [
        "{:process 0, :type :invoke, :f :write, :value 1}",
        "{:process 0, :type :ok, :f :write, :value 1}",
        "{:process 1, :type :invoke, :f :write, :value 2}",
        "{:process 1, :type :ok, :f :write, :value 2}",
    ]
)


def _check(path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path), *args])
    return code, out.getvalue(), err.getvalue()


def test_history_txt_is_read_column_by_column() -> None:
    assert sniff_format(STALE_TXT) == "jepsen-txt"
    history = parse_history(STALE_TXT)
    nemesis = [e for e in history.events if e.is_nemesis]
    assert len(nemesis) == 1 and nemesis[0].f == "read"  # by process, never by :f
    info = next(e for e in history.events if e.type == "info" and not e.is_nemesis)
    assert info.error == "indeterminate: timed out after 5000 ms"
    assert history.nil_read_is_unknown  # a Jepsen register history: Knossos's rule
    assert check_history(history, "register").verdict == "not linearizable"
    assert check_history(parse_history(FINE_TXT), "register").verdict == "linearizable"
    # tuples in the value column are EDN: independent keys split per key
    tuples = "0\t:invoke\t:write\t[7 1]\n0\t:ok\t:write\t[7 1]\n1\t:invoke\t:read\t[8 nil]\n"
    tuples += "1\t:ok\t:read\t[8 1]\n"
    assert check_history(parse_history(tuples), "register").verdict == "not linearizable"


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("0\t:invoke\t:write\n", "separated by tabs"),
        ("0\t:invoke\t:write\t[1 2\n", "value column"),
        ("0\t:invoke\t:write\t1 2\n", "value column"),
        ("[0 1]x\t:invoke\t:write\t1\n", "process column"),
    ],
)
def test_a_bad_history_txt_line_is_named(text: str, column: str) -> None:
    with pytest.raises(HistoryFormatError) as info:
        parse_history(text, "jepsen-txt")
    assert info.value.line == 1 and column in str(info.value)


def _store(root: Path) -> Path:
    """store/<test>/<time>/ with both files and Jepsen's two `latest` links."""
    run = root / "register-test" / "20261201T120000.000Z"
    run.mkdir(parents=True)
    (run / "history.edn").write_text(FINE_EDN)
    (run / "history.txt").write_text(STALE_TXT)  # never read while history.edn is there
    os.symlink(run, root / "register-test" / "latest")
    os.symlink(root / "register-test", root / "latest")
    return run


def test_a_store_folder_is_checked_by_its_history_edn(tmp_path: Path) -> None:
    run = _store(tmp_path / "store")
    for folder in (run, tmp_path / "store" / "register-test", tmp_path / "store"):
        code, out, err = _check(folder)
        assert (code, err) == (0, ""), (folder, err)
        assert "history.edn" in out or "LINEARIZABLE" in out
    (run / "history.edn").unlink()  # then history.txt, which holds the stale read
    code, out, err = _check(tmp_path / "store")
    assert code == 1 and "NOT LINEARIZABLE" in out, (out, err)


def test_a_folder_with_only_jepsen_log_or_nothing(tmp_path: Path) -> None:
    log = tmp_path / "run"
    log.mkdir()
    (log / "jepsen.log").write_text(
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tnil\n"
    )
    code, _out, err = _check(log)
    assert (code, err) == (0, ""), err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _out, err = _check(empty)
    assert code == 2 and "history.edn, history.txt, jepsen.log" in err and "empty" in err
