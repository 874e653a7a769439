"""Harness parts without a cluster: workloads, partitions, promises, CLI usage errors."""

from __future__ import annotations

import random
import subprocess
import sys

import hypothesis.strategies as st
import pytest
from hypothesis import given

from kvstore.harness.guarantees import Setting, promised
from kvstore.harness.nemesis import PARTITION_KINDS, parse_nemeses, partition_groups
from kvstore.harness.workload import RegisterWorkload, make_workload

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_workload_is_deterministic_and_writes_unique_values() -> None:
    a, b = RegisterWorkload(4, seed=7), RegisterWorkload(4, seed=7)
    ops_a = [a.next_op() for _ in range(500)]
    assert ops_a == [b.next_op() for _ in range(500)]
    values = [op.value for op in ops_a if op.f == "write"]
    assert len(values) == len(set(values)) > 100
    assert {op.key for op in ops_a} == {"r0", "r1", "r2", "r3"}


def test_set_workload_writes_each_key_once_and_reads_recent_ones() -> None:
    workload = make_workload("set", 4, 1)
    ops = [workload.next_op() for _ in range(400)]
    written = [op.key for op in ops if op.f == "write"]
    assert len(written) == len(set(written)) > 100
    assert workload.final_keys() == written
    for i, op in enumerate(ops):
        if op.f == "read":
            before = [o.key for o in ops[:i] if o.f == "write"]
            assert op.key in before[-4:]


def test_workloads_the_store_cannot_run_are_refused() -> None:
    with pytest.raises(ValueError, match="compare-and-set"):
        make_workload("cas-register", 4, 0)
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("bank", 4, 0)
    with pytest.raises(ValueError, match="unknown nemesis 'flood'"):
        parse_nemeses("kill,flood")
    assert parse_nemeses("none") == [] and parse_nemeses("kill, clock") == ["kill", "clock"]
    assert parse_nemeses("lying-disk") == ["lying-disk"]


@given(st.sampled_from(PARTITION_KINDS), st.integers(0, 10_000))
def test_partitions_are_symmetric_and_shaped_as_named(kind: str, seed: int) -> None:
    groups = partition_groups(kind, NODES, random.Random(seed))
    assert set(groups) == set(NODES)
    for node, reach in groups.items():
        assert node in reach
        for other in reach:
            assert node in groups[other], "a partition must cut both directions alike"
    sizes = sorted(len(r) for r in groups.values())
    if kind == "halves":
        assert sizes == [2, 2, 3, 3, 3]
    elif kind == "one":
        assert sizes == [1, 4, 4, 4, 4]
    elif kind == "majorities-ring":
        assert sizes == [3] * 5
        assert len({frozenset(r) for r in groups.values()}) == 5  # all different
    else:  # bridge: one node sees everyone, the others a majority through it
        assert sizes == [3, 3, 3, 3, 5]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (Setting("linearizable", None, None, False, "off"), "linearizable"),
        (Setting("quorum", None, None, False, "off"), "no-stale-reads"),
        (Setting("all", None, None, False, "off"), "no-stale-reads"),
        (Setting("quorum", None, None, True, "off"), "eventual"),
        (Setting("one", None, None, False, "off"), "eventual"),
        (Setting(None, 1, 3, False, "off"), "no-stale-reads"),
        (Setting(None, 1, 2, False, "off"), "eventual"),
        (Setting(None, "one", "all", False, "off"), "no-stale-reads"),
    ],
)
def test_promise_table(setting: Setting, expected: str) -> None:
    assert promised(setting, 3) == expected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--consistency", "one", "--r", "1"], "either --consistency or --r/--w"),
        (["--workload", "cas-register"], "compare-and-set"),
        (["--nemesis", "meteor"], "unknown nemesis"),
        (["--rate", "0"], "--rate must be positive"),
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], fragment: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kvstore", "test", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr


def test_latency_percentiles_are_nearest_rank_like_the_checkers() -> None:
    from kvstore.checker.staleness import percentile
    from kvstore.harness.report import percentiles

    seconds = [i / 1000 for i in range(100, 0, -1)]  # 1..100 ms, unsorted
    assert percentiles(seconds) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentiles(seconds)["p99"] == round(1000 * percentile(seconds, 99), 3)
    assert percentiles([]) == {}
