"""Verdicts on hand-made histories: rules every promise shares, and lost writes.

Histories are built event by event as ``kvstore.harness.recorder`` and ``workers``
write them (consecutive indices, one clock in ns, reads invoked with value nil,
failed and indefinite writes completed with their value and an error, nemesis events
from process ``nemesis``), then judged by ``checks.evaluate`` as a run would be.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kvstore.checker import Event, History, JsonlWriter, load_history, parse_history
from kvstore.checker.unexpected import find_unexpected_reads
from kvstore.harness.checks import evaluate
from kvstore.harness.workers import FINAL_PROCESS

PROMISES = ("linearizable", "no-stale-reads", "eventual")
MS = 1_000_000  # ns


class Run:
    """Events as the recorder writes them; every event is 1 ms after the previous one."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def now_s(self) -> float:
        return len(self.events) * MS / 1e9

    def record(
        self,
        process: Any,
        type_: str,
        f: str,
        key: Any = None,
        value: Any = None,
        error: Any = None,
    ) -> None:
        self.events.append(
            Event(
                process=process,
                type=type_,
                f=f,
                value=value,
                key=key,
                time=len(self.events) * MS,
                index=len(self.events),
                error=error,
                extra={"consistency": "quorum (strict)"}
                | ({"node": f"n{process % 5 + 1}"} if isinstance(process, int) else {}),
            )
        )

    def invoke(self, process: int, f: str, key: str, value: int | None = None) -> None:
        self.record(process, "invoke", f, key, None if f == "read" else value)

    def complete(
        self, process: int, type_: str, f: str, key: str, value: int | None, error: str = ""
    ) -> None:
        self.record(process, type_, f, key, value, error or None)

    def write(self, process: int, key: str, value: int, outcome: str = "ok") -> None:
        self.invoke(process, "write", key, value)
        errors = {"fail": "Unavailable: 1 of 2 replicas up", "info": "RequestTimeout: no answer"}
        self.complete(process, outcome, "write", key, value, errors.get(outcome, ""))

    def read(self, process: int, key: str, value: int | None) -> None:
        self.invoke(process, "read", key)
        self.complete(process, "ok", "read", key, value)

    def final_reads(self, values: dict[str, int | None]) -> None:
        for i, (key, value) in enumerate(values.items()):
            self.read(FINAL_PROCESS + i, key, value)

    def nemesis(self, f: str, value: dict[str, Any]) -> None:
        self.record("nemesis", "info", f, value=value)

    def history(self) -> History:
        return History(list(self.events), format="jsonl")


def judge(
    run: Run,
    promise: str,
    nemeses: tuple[str, ...] = ("partition",),
    intervals: tuple[tuple[float, float, str], ...] = (),
    write_once: bool = False,
) -> dict[str, Any]:
    return evaluate(
        run.history(),
        options=SimpleNamespace(check_time_limit=10.0, nemeses=list(nemeses)),
        n=3,
        settle={"settled": True, "problems": []},
        convergence={"converged": True, "diverged_keys": {}},
        promise=promise,
        write_once=write_once,
        nemesis_intervals=intervals,
    )


# ------------------------------------------------------------------ unexpected values


def failed_write_read() -> Run:
    run = Run()
    run.write(0, "r0", 1)
    run.write(1, "r0", 2, "fail")  # definitely not executed ...
    run.read(2, "r0", 2)  # ... yet read: the bug this check is for
    run.write(0, "r0", 3)
    run.read(3, "r0", 3)
    run.final_reads({"r0": 3})
    return run


@pytest.mark.parametrize("promise", PROMISES)
def test_reading_a_definitely_failed_write_breaks_every_promise(promise: str) -> None:
    results = judge(failed_write_read(), promise)
    assert results["verdict"] == "violated" and results["exit_code"] == 1
    assert results["checks"]["no-unexpected-values"] == "violated"
    [bad] = results["unexpected_reads"]["examples"]
    assert (bad["kind"], bad["process"], bad["key"], bad["value"]) == ("failed-write", 2, "r0", 2)
    assert bad["index"] == 5  # the read's completion event, which carries the value
    [write] = bad["writes"]
    assert (write["process"], write["value"], write["status"]) == (1, 2, "fail")
    reason = next(r for r in results["reasons"] if "no write could have produced" in r)
    assert "p2 read('r0') -> ok 2 (index 5)" in reason and "p1 write('r0', 2) -> fail" in reason


@pytest.mark.parametrize("promise", PROMISES)
def test_reading_a_value_nobody_wrote_breaks_every_promise(promise: str) -> None:
    run = Run()
    run.write(0, "r0", 1)
    run.read(1, "r0", 1)
    run.read(2, "r0", 77)  # no write of 77 anywhere
    run.final_reads({"r0": 1})
    results = judge(run, promise)
    assert results["verdict"] == "violated"
    [bad] = results["unexpected_reads"]["examples"]
    assert (bad["kind"], bad["process"], bad["value"], bad["writes"]) == (
        "never-written",
        2,
        77,
        [],
    )
    assert any("no write could have produced" in r for r in results["reasons"])


@pytest.mark.parametrize("promise", PROMISES)
def test_reading_a_value_before_its_write_began_breaks_every_promise(promise: str) -> None:
    run = Run()
    run.read(1, "r0", 5)  # completes before the write of 5 is even invoked
    run.write(0, "r0", 5)
    run.final_reads({"r0": 5})
    results = judge(run, promise)
    assert results["verdict"] == "violated"
    assert [u["kind"] for u in results["unexpected_reads"]["examples"]] == ["future-write"]
    assert any("p1 read('r0') -> ok 5" in r for r in results["reasons"])


@pytest.mark.parametrize("promise", PROMISES)
def test_reading_an_indefinite_writes_value_is_fine(promise: str) -> None:
    run = Run()
    run.write(0, "r0", 1)
    run.write(1, "r0", 2, "info")  # timed out: it may have happened
    run.read(2, "r0", 2)
    run.read(3, "r2", None)  # a key nobody wrote reads nil: fine too
    run.invoke(4, "write", "r1", 9)  # never completed (the worker moved on)
    run.read(5, "r1", 9)
    run.final_reads({"r0": 2, "r1": 9})
    results = judge(run, promise)
    assert results["checks"]["no-unexpected-values"] == "held"
    assert results["unexpected_reads"] == {"count": 0, "examples": []}
    assert results["verdict"] == "held", results["reasons"]


def test_set_workload_reads_only_elements_whose_add_could_have_happened() -> None:
    run = Run()
    run.write(0, "s1", 1)
    run.write(1, "s2", 2, "fail")
    run.write(2, "s3", 3, "info")
    run.read(3, "s1", 1)
    run.read(4, "s2", 2)  # the failed add shows up
    run.read(5, "s3", 3)  # the indefinite add may
    run.read(6, "s2", None)
    run.final_reads({"s1": 1, "s2": None, "s3": 3})
    results = judge(run, "eventual", write_once=True)
    assert results["checks"]["durable"] == "held"
    assert results["verdict"] == "violated"
    assert [(u["key"], u["kind"]) for u in results["unexpected_reads"]["examples"]] == [
        ("s2", "failed-write")
    ]


def test_unexpected_reads_are_found_in_a_saved_history_too(tmp_path: Path) -> None:
    """The same answer from the JSON Lines a run leaves (values frozen, lines known)."""
    run = failed_write_read()
    writer = JsonlWriter(str(tmp_path / "history.jsonl"))  # what the recorder writes with
    for event in run.events:
        writer.write(event)
    writer.close()
    history = load_history(tmp_path / "history.jsonl")
    [bad] = find_unexpected_reads(history)
    assert (bad.kind, bad.index, bad.read.line, bad.read.output) == ("failed-write", 5, 5, 2)


def test_kv_histories_allow_empty_reads_and_cas_false_writes_nothing() -> None:
    text = "\n".join(
        [
            '{"process": 0, "type": "invoke", "f": "put", "key": "k", "value": "a"}',
            '{"process": 0, "type": "ok", "f": "put", "key": "k", "value": "a"}',
            '{"process": 1, "type": "invoke", "f": "get", "key": "k"}',
            '{"process": 1, "type": "ok", "f": "get", "key": "k", "value": ""}',
            '{"process": 2, "type": "invoke", "f": "cas", "key": "c", "value": [1, 2]}',
            '{"process": 2, "type": "ok", "f": "cas", "key": "c", "value": false}',
            '{"process": 3, "type": "invoke", "f": "read", "key": "c"}',
            '{"process": 3, "type": "ok", "f": "read", "key": "c", "value": 2}',
        ]
    )
    assert [u.kind for u in find_unexpected_reads(parse_history(text, "jsonl"))] == [
        "never-written"  # only a cas that compared false (and wrote nothing) named 2
    ]


# ------------------------------------------------------------------------ lost writes


def lost_write_run(nemesis: str = "partition") -> tuple[Run, tuple[tuple[float, float, str], ...]]:
    """Write 2 is acknowledged after write 1 completed, yet a later read (and the final
    read) return 1: write 2 lost last-writer-wins to an earlier write."""
    run = Run()
    began = run.now_s()
    run.nemesis("start", {"nemesis": nemesis})
    run.write(0, "r0", 1)
    run.write(1, "r0", 2)
    run.nemesis("stop", {"nemesis": nemesis})
    period = (began, run.now_s(), nemesis)
    run.read(2, "r0", 1)
    run.write(0, "r1", 5)
    run.read(3, "r1", 5)
    run.final_reads({"r0": 1, "r1": 5})
    return run, (period,)


@pytest.mark.parametrize("promise", ["no-stale-reads", "linearizable"])
def test_a_lost_write_without_clock_faults_breaks_a_strict_promise(promise: str) -> None:
    run, intervals = lost_write_run()
    results = judge(run, promise, ("partition", "kill"), intervals)
    assert results["verdict"] == "violated"
    assert results["checks"]["no-lost-writes"] == "violated"
    lost = results["lost_writes"]
    assert lost["count"] == 1 and not lost["clock_faults"]
    [example] = lost["examples"]
    assert example["write"]["value"] == 2
    assert example["missed_by"]["process"] == 2 and example["read_returned"]["value"] == 1
    assert example["overlaps_clock_fault"] is False
    assert any("acknowledged writes lost without clock faults" in r for r in results["reasons"])


def test_a_lost_write_under_clock_faults_is_allowed_and_attributed() -> None:
    run, intervals = lost_write_run("clock")
    results = judge(run, "no-stale-reads", ("clock",), intervals)
    assert results["verdict"] == "held", results["reasons"]
    assert results["checks"]["no-lost-writes"] == "allowed"
    assert results["staleness"]["lost_writes"] == 1  # reported as before
    lost = results["lost_writes"]
    assert lost["clock_faults"] and lost["overlapping_clock_faults"] == 1
    [example] = lost["examples"]
    assert example["overlaps_clock_fault"] and example["source_overlaps_clock_fault"]
    assert example["ms_after_clock_fault"] is None


def test_a_lost_write_after_a_clock_period_says_how_long_after() -> None:
    run = Run()
    began = run.now_s()
    run.nemesis("start", {"nemesis": "clock", "clock_offset_ms": {"n2": 3000}})
    run.nemesis("stop", {"nemesis": "clock", "clock": "reset"})
    intervals = ((began, run.now_s(), "clock"),)
    run.write(0, "r0", 1)  # begins as the period ends
    run.write(1, "r0", 2)
    run.read(2, "r0", 1)
    run.final_reads({"r0": 1})
    results = judge(run, "no-stale-reads", ("clock", "partition"), intervals)
    assert results["verdict"] == "held", results["reasons"]
    [example] = results["lost_writes"]["examples"]
    assert example["overlaps_clock_fault"] is False
    assert example["ms_after_clock_fault"] == 2.0  # write 2 began 2 ms after the period


def test_eventual_settings_may_lose_writes_without_clock_faults() -> None:
    run, intervals = lost_write_run()
    results = judge(run, "eventual", ("partition",), intervals)
    assert results["verdict"] == "held", results["reasons"]
    assert results["checks"]["no-lost-writes"] == "allowed"


def test_a_write_hidden_by_an_indefinite_write_is_not_lost() -> None:
    """An indefinite write may have been stamped after the acknowledged one: reading its
    value later is no evidence that the acknowledged write lost to an earlier one."""
    run = Run()
    run.invoke(1, "write", "r0", 3)  # in flight throughout, then timed out
    run.write(0, "r0", 2)
    run.complete(1, "info", "write", "r0", 3, "RequestTimeout: no answer")
    run.read(2, "r0", 3)
    run.final_reads({"r0": 3})
    results = judge(run, "no-stale-reads", ())
    assert results["lost_writes"]["count"] == 0
    assert results["verdict"] == "held", results["reasons"]
