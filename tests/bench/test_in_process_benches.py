"""The in-process repair benchmarks still run and still check what they claim.

A benchmark nobody runs rots: ``bench/repair.py`` stopped working when peer input
began to be validated, and nothing noticed. These run the in-process parts at a tiny
size, in a subprocess as a user would, and check the figures' shape and the work done
(never the times). Both benchmarks fail on their own when replicas do not converge.
``bench/node_cost.py`` runs its two small clusters, and its counts are checked for shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_json(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_scale_repair_part_repairs_every_drifted_key_both_ways() -> None:
    report = run_json("bench/scale.py", "--part", "repair", "--repair-keys", "4000", "--json")
    levels = report["repair"]["levels"]
    assert [level["differing_fraction"] for level in levels] == [0.0, 0.001, 0.01]
    for level in levels:
        for method in ("full_rebuild", "digests"):
            figure = level[method]
            assert figure["keys_repaired"] == level["differing_keys"], (method, level)
        if level["differing_keys"] == 0:
            assert level["digests"]["messages"] == 2  # the roots agree: open and close
            assert level["digests"]["bytes"] < 100


def test_repair_bench_runs_its_in_process_part() -> None:
    report = run_json(
        "bench/repair.py", "--keys", "3000", "--repeat", "1", "--no-read-repair", "--json"
    )
    results = report["results"]
    assert results["anti_entropy_keys_repaired"] == 30  # 1% of 3,000, both directions
    assert results["in_sync_round_bytes"] < 100
    assert results["bytes_ratio_naive_over_ae"] > 1


def test_node_cost_counts_both_io_stacks() -> None:
    report = run_json(
        "bench/node_cost.py", "--json", "--pairs", "1", "--seconds", "0.5",
        "--figures", "quorum_get,one_get",
    )  # fmt: skip
    figures = report["figures"]
    for stack in ("default", "node"):
        quorum, one = figures["quorum_get"][stack], figures["one_get"][stack]
        assert quorum["errors"] == one["errors"] == 0
        assert quorum["ops_per_s"] > 0 and quorum["node_cpu_us_per_call"] > 0
        assert quorum["node_switches_per_call"] > 0
        # R = 2 asks one peer; R = 1 at the key's primary asks none
        assert quorum["frames_per_call"] > 10 * one["frames_per_call"], (stack, figures)
    assert set(figures["quorum_get"]["node_over_default"]) == {
        "ops_per_s", "node_cpu_us_per_call", "node_switches_per_call"
    }  # fmt: skip


def test_node_cost_compares_another_trees_nodes(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "bench/node_cost.py", "--baseline-tree", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "not a kvstore checkout" in refused.stderr
    report = run_json(
        "bench/node_cost.py", "--json", "--pairs", "1", "--seconds", "0.5",
        "--figures", "quorum_get", "--baseline-tree", str(REPO),
    )  # fmt: skip
    figure = report["figures"]["quorum_get"]
    assert figure["baseline"]["errors"] == figure["this"]["errors"] == 0
    assert figure["baseline"]["ops_per_s"] > 0 and figure["this"]["ops_per_s"] > 0
    assert "node_cpu_us_per_call" in figure["this_over_baseline"]
    assert report["settings"]["baseline_tree"] == str(REPO)
