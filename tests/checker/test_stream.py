"""`kvstore check --stream`: the in-memory verdicts, in memory bounded by one bucket.

Tiny chunks (7 lines) and few buckets put chunk boundaries inside every history and many
keys in each bucket, so pairing across chunks, line numbers and per-key splitting are all
exercised on the whole reference corpus.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kvstore.checker import check_history, load_history
from kvstore.checker.history import HistoryFormatError
from kvstore.checker.stream import check_stream

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "porcupine"
FILES = sorted(p for p in CORPUS.glob("*/*") if p.suffix in (".log", ".txt"))
needs_corpus = pytest.mark.skipif(not FILES, reason=f"reference corpus not found at {CORPUS}")


@needs_corpus
def test_every_corpus_file_gets_the_in_memory_verdict() -> None:
    for path in FILES:
        history = load_history(path)
        if not history.events:
            continue
        held = check_history(history, explain=False, keep_going_s=0.0)
        streamed, stats = check_stream(
            path, chunk_lines=7, buckets=5, explain=False, keep_going_s=0.0
        )
        assert (streamed.verdict, streamed.ops, streamed.model) == (
            held.verdict,
            held.ops,
            held.model,
        ), path
        assert stats.chunks > 1, path


@needs_corpus
def test_a_counterexample_names_the_lines_of_the_whole_file() -> None:
    path = CORPUS / "jepsen" / "etcd_004.log"
    held = check_history(load_history(path), keep_going_s=0.0)
    streamed, _ = check_stream(path, chunk_lines=7, buckets=3, keep_going_s=0.0)
    (a,) = held.counterexamples
    (b,) = streamed.counterexamples
    assert b.blocked.line == a.blocked.line
    assert [o.line for o in b.window] == [o.line for o in a.window]
    assert b.prefix_state == a.prefix_state


def _synthetic(path: Path, ops: int, keys: int, procs: int, seed: int) -> None:
    """A linearizable register history: each op takes effect at its completion."""
    rnd = random.Random(seed)
    state: dict[int, int | None] = {}
    pending: dict[int, tuple[str, int, int]] = {}
    started = done = value = 0
    lines = []
    while done < ops:
        p = rnd.randrange(procs)
        if p in pending:
            f, k, v = pending.pop(p)
            if f == "write":
                state[k] = v
            else:
                v = state.get(k)  # type: ignore[assignment]  # nil before any write
            lines.append({"process": p, "type": "ok", "f": f, "key": k, "value": v})
            done += 1
        elif started < ops:
            started += 1
            k = rnd.randrange(keys)
            value += 1
            f = "write" if rnd.random() < 0.5 else "read"
            pending[p] = (f, k, value)
            v2 = value if f == "write" else None
            lines.append({"process": p, "type": "invoke", "f": f, "key": k, "value": v2})
    # Key 0 gets a stale read at the very end: the one violation.
    lines.append({"process": 999, "type": "invoke", "f": "write", "key": 0, "value": -1})
    lines.append({"process": 999, "type": "ok", "f": "write", "key": 0, "value": -1})
    lines.append({"process": 999, "type": "invoke", "f": "read", "key": 0, "value": None})
    lines.append({"process": 999, "type": "ok", "f": "read", "key": 0, "value": -2})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_memory_holds_one_bucket_and_only_failing_keys_keep_their_ops(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    _synthetic(path, ops=20_000, keys=400, procs=20, seed=3)
    result, stats = check_stream(path, buckets=32, chunk_lines=1000, keep_going_s=None)
    assert result.verdict == "not linearizable"
    assert stats.ops == 20_002
    assert stats.keys == 400
    # Keys spread over the buckets: the largest holds a bounded share, not the history.
    assert stats.largest_bucket_ops < 3 * stats.ops / stats.buckets
    failing = [p for p in result.partitions if p.verdict == "not linearizable"]
    assert [p.key for p in failing] == [0]
    assert failing[0].ops  # kept, for the counterexample
    assert all(not p.ops for p in result.partitions if p.verdict == "linearizable")
    assert sum(p.checked for p in result.partitions) == stats.ops


def test_an_edn_vector_of_ops_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.edn"
    path.write_text(
        "[{:process 0 :type :invoke :f :write :value 1}\n {:process 0 :type :ok :f :write}]\n"
    )
    with pytest.raises(HistoryFormatError, match="one vector of ops"):
        check_stream(path)


def test_an_op_cut_by_a_chunk_boundary_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.edn"
    path.write_text(
        "{:process 0 :type :invoke :f :write :value 1}\n"
        "{:process 0 :type :ok\n :f :write :value 1}\n"
    )
    assert load_history(path).operations()  # whole, it reads
    with pytest.raises(HistoryFormatError) as e:
        check_stream(path, chunk_lines=2)
    # Found where the chunk ends, naming the line the cut op opened on.
    assert e.value.line == 3
    assert "opened on line 2" in str(e.value)
    assert "chunks of whole lines" in str(e.value)


def test_events_out_of_index_order_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "i.jsonl"
    rows = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1, "index": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1, "index": 0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(HistoryFormatError, match="index order") as e:
        check_stream(path)
    assert e.value.line == 1  # the event the reader would have moved


def test_the_cli_streams_and_refuses_what_needs_the_whole_history(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    _synthetic(path, ops=2_000, keys=20, procs=8, seed=5)
    cli = [sys.executable, "-m", "kvstore", "check", "--stream"]
    ok = subprocess.run([*cli, "--json", str(path)], capture_output=True, text=True, check=False)
    assert ok.returncode == 1, ok.stderr
    out = json.loads(ok.stdout)
    assert out["verdict"] == "not linearizable"
    assert out["stream"]["ops"] == 2_002
    bad = subprocess.run(
        [*cli, "--html", str(tmp_path / "r.html"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "--stream does not go with --html" in bad.stderr


def test_bytes_that_are_not_utf8_exit_2_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"process": 0, "type": "invoke", "f": "read"}\n\xff\xfe\x00garbage\n')
    cli = [sys.executable, "-m", "kvstore", "check", "--stream", str(path)]
    res = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert "UTF-8" in res.stderr and "Traceback" not in res.stderr


def test_keys_named_otherwise_in_a_later_chunk_are_refused(tmp_path: Path) -> None:
    # Jepsen independent tuples first, then a :key field: the in-memory reader would read
    # every op by the :key field, so streaming cannot go on with the tuples.
    rows = [
        "{:process 0 :type :invoke :f :write :value [1 5]}",
        "{:process 0 :type :ok :f :write :value [1 5]}",
        "{:process 0 :type :invoke :f :write :key 1 :value 6}",
        "{:process 0 :type :ok :f :write :key 1 :value 6}",
    ]
    path = tmp_path / "mixed.edn"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(HistoryFormatError, match="keys named the same way") as e:
        check_stream(path, chunk_lines=2)
    assert e.value.line == 3
