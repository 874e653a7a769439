"""The `check` subcommand: exit codes, JSON and HTML output, staleness."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kvstore.checker.__main__ import main
from kvstore.checker.cli import register

LIN = (
    '{"index":0,"time":0,"process":0,"type":"invoke","f":"write","key":"a","value":1}\n'
    '{"index":1,"time":10,"process":0,"type":"ok","f":"write","key":"a","value":1}\n'
    '{"index":2,"time":20,"process":1,"type":"invoke","f":"read","key":"a","value":null}\n'
    '{"index":3,"time":30,"process":1,"type":"ok","f":"read","key":"a","value":1}\n'
)
# The read begins after the write of 2 completed yet returns 1.
NOT_LIN = LIN + (
    '{"index":4,"time":40,"process":0,"type":"invoke","f":"write","key":"a","value":2}\n'
    '{"index":5,"time":50,"process":0,"type":"ok","f":"write","key":"a","value":2}\n'
    '{"index":6,"time":60,"process":1,"type":"invoke","f":"read","key":"a","value":null}\n'
    '{"index":7,"time":70,"process":1,"type":"ok","f":"read","key":"a","value":1}\n'
    '{"index":8,"time":80,"process":2,"type":"invoke","f":"read","key":"b","value":null}\n'
    '{"index":9,"time":90,"process":2,"type":"ok","f":"read","key":"b","value":null}\n'
)


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_linearizable_exit_0_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", _write(tmp_path, "h.jsonl", LIN)]) == 0
    assert "verdict: LINEARIZABLE" in capsys.readouterr().out


def test_not_linearizable_exit_1_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", _write(tmp_path, "h.jsonl", NOT_LIN), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "not linearizable"
    assert out["model"] == "register"
    assert out["ops"] == 5
    per = {p["key"]: p for p in out["per_partition"]}
    assert per["a"]["verdict"] == "not linearizable"
    assert per["b"]["verdict"] == "linearizable"
    ce = per["a"]["counterexample"]
    assert ce["key"] == "a"
    # write 2 then the stale read, plus one op that pins value 1 before write 2.
    lines = [o["line"] for o in ce["window"]]
    assert lines[-2:] == [5, 7] and lines[0] in (1, 3) and len(lines) == 3
    assert ce["prefix_state"] == 2
    assert "seconds" in out


def test_html_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "r.html"
    assert main(["check", _write(tmp_path, "h.jsonl", NOT_LIN), "--html", str(html)]) == 1
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    data = page.split("<script id='data' type='application/json'>")[1].split("</script>")[0]
    parts = json.loads(data)["parts"]
    classes = [o["c"] for o in parts[0]["ops"]]
    assert classes.count("blocked") == 1 and "window" in classes
    assert any("b" in o and "a" in o for o in parts[0]["ops"])  # states before/after


def test_staleness_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", _write(tmp_path, "h.jsonl", NOT_LIN), "--staleness", "--json"]) == 1
    st = json.loads(capsys.readouterr().out)["staleness"]
    assert st["stale_reads"] == 1 and st["k_staleness"] == {"0": 2, "1": 1}
    assert main(["check", _write(tmp_path, "h2.jsonl", NOT_LIN), "--staleness"]) == 1
    assert "k-staleness" in capsys.readouterr().out


def test_staleness_without_times_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tnil\n"
    assert main(["check", _write(tmp_path, "e.log", log), "--staleness"]) == 2
    assert "time" in capsys.readouterr().err


def test_malformed_and_missing_input_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = LIN + '{"process":1,"type":"ok"\n'
    assert main(["check", _write(tmp_path, "bad.jsonl", bad)]) == 2
    assert "bad.jsonl:5: expected a JSON object" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["check", _write(tmp_path, "h.jsonl", LIN), "--time-limit", "0"]) == 2


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["check", _write(tmp_path, "h.jsonl", LIN), "--model", "queue"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["check"])
    assert e.value.code == 2


def test_time_limit_gives_unknown_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A limit of one nanosecond has passed before the first partition starts.
    assert main(["check", _write(tmp_path, "h.jsonl", LIN), "--time-limit", "1e-9"]) == 3
    assert "UNKNOWN" in capsys.readouterr().out


def test_register_into_a_parent_parser(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="kvstore")
    sub = parser.add_subparsers(dest="cmd")
    register(sub)
    args = parser.parse_args(
        ["check", _write(tmp_path, "h.jsonl", LIN), "--model", "register", "--format", "jsonl"]
    )
    assert args.func(args) == 0
