"""The end of a run checks what anti-entropy did, before read repair can cover it up.

Under ``hint-loss`` a killed node's fallbacks acknowledge and then drop the hints they
take for it, so the writes it missed reach it only through the repair round: with the
round the replicas converge (and the round says how many keys it repaired); with the
round planted away (``repair=False``) the convergence check, which runs before the final
reads, must catch the divergence, although those reads repair it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.test_runs import run

pytestmark = pytest.mark.cluster


def test_lost_hints_are_repaired_by_anti_entropy_and_replicas_converge(tmp_path: Path) -> None:
    results = run(tmp_path, "quorum", ["hint-loss"], seed=4, workload="set")
    repair = results["settle"]["anti_entropy"]
    assert repair["keys_repaired"] > 0 and not repair["errors"], repair
    assert results["checks"]["converged"] == "held"
    assert results["convergence"]["after_final_reads"]
    assert results["verdict"] == "held", results["reasons"]


def test_a_run_without_the_repair_round_breaks_convergence(tmp_path: Path) -> None:
    results = run(tmp_path, "quorum", ["hint-loss"], seed=4, workload="set", repair=False)
    assert results["settle"]["anti_entropy"] == {"skipped": True}
    assert results["checks"]["converged"] == "violated"
    assert results["convergence"]["diverged_keys"]
    # the final reads at all with blocking read repair then made every replica agree:
    # checked after them, as before, the run would have looked converged
    assert results["convergence"]["after_final_reads"]
    assert results["verdict"] == "violated"
