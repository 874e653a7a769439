"""The staleness analyses follow the checker's register: `--initial` and Knossos's rule
for reads of nil, as the linearizability check does."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from kvstore.checker import parse_history
from kvstore.checker.__main__ import main
from kvstore.checker.staleness import analyse_staleness

# A register that starts at 0 (Knossos's cas-register data): a read of 0 before any
# write is fresh; a read of 0 after the write of 1 completed is stale.
AT_ZERO = "\n".join(
    [
        "{:process 0, :type :invoke, :f :read, :value nil, :time 0}",
        "{:process 0, :type :ok, :f :read, :value 0, :time 1}",
        "{:process 1, :type :invoke, :f :write, :value 1, :time 2}",
        "{:process 1, :type :ok, :f :write, :value 1, :time 3}",
        "{:process 2, :type :invoke, :f :read, :value nil, :time 4}",
        "{:process 2, :type :ok, :f :read, :value 0, :time 5}",
        "{:process 3, :type :invoke, :f :read, :value nil, :time 6}",
        "{:process 3, :type :ok, :f :read, :value nil, :time 7}",
    ]
)


def test_the_initial_value_is_version_zero() -> None:
    history = parse_history(AT_ZERO)
    assert history.nil_read_is_unknown  # EDN: Knossos's rule
    # without --initial, 0 is a value no write produced: both reads of it unexplained
    plain = analyse_staleness(history)
    assert len(plain.unexplained_reads) == 2 and plain.stale_reads == []
    at_zero = analyse_staleness(history, initial=0)
    assert at_zero.unexplained_reads == []
    assert [s.read.process for s in at_zero.stale_reads] == [2]  # the read after the write


def test_a_read_of_nil_under_knossos_rule_says_nothing() -> None:
    history = parse_history(AT_ZERO)
    # Knossos's rule (the EDN default): p3's read of nil is left out, not a stale read
    assert analyse_staleness(history, initial=0).reads == 2
    strict = analyse_staleness(history, initial=None, nil_read_unknown=False)
    assert strict.reads == 3 and 3 in [s.read.process for s in strict.stale_reads]


def test_the_cli_passes_initial_to_the_staleness_analyses(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    path.write_text(AT_ZERO)
    for args, stale, unexplained in ((["--initial", "0"], 1, 0), ([], 0, 2)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            main(["check", str(path), *args, "--staleness", "--json"])
        staleness = json.loads(out.getvalue())["staleness"]
        assert (staleness["stale_reads"], staleness["unexplained_reads"]) == (stale, unexplained)
