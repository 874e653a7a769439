"""How far `kvstore check` goes once a partition has failed: `--first-failure` stops
there (Porcupine's rule: the verdict is known), the default gives the others 1 s more,
`--all-partitions` checks every one. The verdict is the same each way."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from kvstore.checker.__main__ import main


def _line(process: int, type_: str, f: str, key: str, value: int | None) -> str:
    v = "null" if value is None else str(value)
    return f'{{"process": {process}, "type": "{type_}", "f": "{f}", "key": "{key}", "value": {v}}}'


def _history(tmp_path: Path) -> Path:
    # key "a" (checked first: the smaller) has a stale read; key "b" is fine
    lines = [
        _line(0, "invoke", "write", "a", 1),
        _line(0, "ok", "write", "a", 1),
        _line(0, "invoke", "read", "a", None),
        _line(0, "ok", "read", "a", 2),
    ]
    for i in range(5):
        lines += [_line(1, "invoke", "write", "b", i), _line(1, "ok", "write", "b", i)]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check(path: Path, *args: str) -> tuple[int, dict[str, int]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["check", str(path), "--json", *args])
    return code, json.loads(out.getvalue())["partition_verdicts"]


def test_first_failure_stops_there_the_others_go_on_with_the_same_verdict(
    tmp_path: Path,
) -> None:
    path = _history(tmp_path)
    assert _check(path, "--first-failure") == (1, {"not linearizable": 1, "unknown": 1})
    assert _check(path) == (1, {"not linearizable": 1, "linearizable": 1})
    assert _check(path, "--all-partitions") == (1, {"not linearizable": 1, "linearizable": 1})


def test_the_two_rules_cannot_be_combined(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _check(_history(tmp_path), "--first-failure", "--all-partitions")
