"""Deletes: the ``deletes`` workload, a delete read as absent, and deletes that come back.

Hand-made histories pin the rules (a final read of a value an acknowledged delete had
replaced is a resurrected delete: every promise breaks, unless clocks were skewed; a
read of nil after a delete is fresh, not stale); real runs of the workload under kills
and partitions hold on the unmodified store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.test_promises import PROMISES, Run, judge
from tests.harness.test_runs import run as harness_run


def deleted_then(final: int | None) -> Run:
    run = Run()
    run.write(0, "r0", 1)
    run.read(1, "r0", 1)
    run.invoke(0, "delete", "r0")
    run.complete(0, "ok", "delete", "r0", None)
    run.read(1, "r0", None)  # absent after the delete: fresh
    run.final_reads({"r0": final})
    return run


@pytest.mark.parametrize("promise", PROMISES)
def test_a_delete_reads_as_absent_and_holds(promise: str) -> None:
    results = judge(deleted_then(None), promise)
    assert results["checks"]["no-resurrected-deletes"] == "held"
    assert results["staleness"]["stale_reads"] == 0
    assert results["verdict"] == "held", results["reasons"]


@pytest.mark.parametrize("promise", PROMISES)
def test_a_deleted_value_coming_back_after_repair_breaks_every_promise(promise: str) -> None:
    results = judge(deleted_then(1), promise)
    assert results["checks"]["no-resurrected-deletes"] == "violated"
    [example] = results["resurrected_deletes"]["examples"]
    assert example["delete"]["f"] == "delete" and example["write"]["value"] == 1
    assert results["verdict"] == "violated"
    assert any("deleted keys came back" in r for r in results["reasons"])


def test_under_clock_skew_a_resurrection_is_allowed_and_reported() -> None:
    results = judge(deleted_then(1), "no-stale-reads", nemeses=("clock",))
    assert results["checks"]["no-resurrected-deletes"] == "allowed"
    assert results["resurrected_deletes"]["count"] == 1


@pytest.mark.parametrize(("consistency", "nemesis"), [("quorum", "kill"), ("all", "partition")])
def test_the_deletes_workload_holds_on_the_unmodified_store(
    tmp_path: Path, consistency: str, nemesis: str
) -> None:
    results = harness_run(tmp_path, consistency, [nemesis], seed=5, workload="deletes")
    history = (Path(results["folder"]) / "history.jsonl").read_text()
    assert history.count('"f": "delete"') > 20 or history.count('"f":"delete"') > 20
    assert results["checks"]["no-resurrected-deletes"] == "held"
    assert results["checks"]["no-unexpected-values"] == "held"
    assert results["verdict"] == "held", results["reasons"]
