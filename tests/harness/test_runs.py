"""Short real harness runs: 5 node processes, faults, recorded histories, verdicts.

These are the issue's checks: the linearizable level holds under partition and kill;
``one`` under partition shows stale reads; quorum pushed to ``--expect linearizable``
is caught at least sometimes (the rate is printed); clock skew with last-writer-wins
shows lost writes. Runs are short, so the probabilistic ones use several seeds.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kvstore.harness.guarantees import Setting
from kvstore.harness.runner import RunOptions, run_test

pytestmark = pytest.mark.cluster


def run(tmp_path: Path, consistency: str, nemeses: list[str], **kw: Any) -> dict[str, Any]:
    options = RunOptions(
        setting=Setting(consistency, None, None, False, "off"),
        nemeses=nemeses,
        time_limit=kw.pop("time_limit", 6.0),
        rate=kw.pop("rate", 150.0),
        concurrency=kw.pop("concurrency", 8),
        keys=kw.pop("keys", 4),
        store=tmp_path / "store",
        nemesis_interval=1.5,
        op_timeout=0.5,
        check_time_limit=20.0,
        partitions=kw.pop("partitions", "seam"),
        **kw,
    )
    return asyncio.run(run_test(options))


def assert_run_folder(results: dict[str, Any]) -> None:
    folder = Path(results["folder"])
    for name in ("history.jsonl", "history.edn", "results.json", "linearizability.html"):
        assert (folder / name).stat().st_size > 0, name
    for name in ("latency.png", "throughput.png", "timeline.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG", name
    assert sorted(p.name for p in (folder / "logs").iterdir()) == [f"n{i}.log" for i in range(1, 6)]
    assert (folder.parent / "latest").resolve() == folder.resolve()
    saved = json.loads((folder / "results.json").read_text())
    assert saved["verdict"] == results["verdict"]
    events = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert any(e["process"] == "nemesis" for e in events) or not results["options"]["nemeses"]
    times = [e["time"] for e in events]
    assert times == sorted(times), "one monotonic clock for every event"


@pytest.mark.parametrize("nemesis", ["partition", "kill"])
def test_linearizable_holds(tmp_path: Path, nemesis: str) -> None:
    results = run(tmp_path, "linearizable", [nemesis], seed=3)
    assert results["promise"] == "linearizable"
    assert results["verdict"] == "held", results["reasons"]
    assert results["ops"].get("ok", 0) > 200
    assert results["convergence"]["converged"]
    assert_run_folder(results)


def test_linearizable_holds_while_nodes_leave_and_rejoin_the_ring(tmp_path: Path) -> None:
    """``--nemesis membership`` on real processes: the operator removes a node under load
    (stream, clean-up, stop) and heal adds it back wiped, joining; 200 keys, so a change
    that failed to carry a key would be read back missing (see tests/sim)."""
    results = run(tmp_path, "linearizable", ["membership"], seed=5, time_limit=8.0, keys=200)
    assert results["verdict"] == "held", results["reasons"]
    folder = Path(results["folder"])
    events = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    changes = [e["value"] for e in events if e["process"] == "nemesis" and e["f"] == "start"]
    assert changes and all("removed" in c for c in changes), changes
    healed = [e["value"] for e in events if e["process"] == "nemesis" and e["f"] == "stop"]
    assert healed and all("added" in c and "error" not in c for c in healed), healed
    assert results["convergence"]["converged"]


def test_linearizable_holds_on_slow_and_lossy_links(tmp_path: Path) -> None:
    results = run(tmp_path, "linearizable", ["delay", "drop"], seed=4, time_limit=8.0)
    assert results["verdict"] == "held", results["reasons"]
    assert results["convergence"]["converged"]
    folder = Path(results["folder"])
    events = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    faults = [e["value"] for e in events if e["process"] == "nemesis" and e["f"] == "start"]
    assert any("delay_ms" in f for f in faults) and any("drop" in f for f in faults), faults
    assert results["ops"].get("ok", 0) > 100


def test_one_under_partition_shows_stale_reads(tmp_path: Path) -> None:
    results = run(tmp_path, "one", ["partition"], seed=1)
    assert results["promise"] == "eventual" and results["verdict"] == "held"
    assert results["staleness"]["stale_reads"] > 0
    assert results["checks"]["no-stale-reads"] == "violated"
    # PBS from the nodes' scraped replica round trips, beside what the reads saw
    predicted, observed = results["pbs"]["predicted"], results["pbs"]["observed"]
    assert predicted["available"], predicted
    assert (predicted["r"], predicted["w"]) == (1, 1)
    assert 0.0 <= predicted["p_stale_read"] <= 1.0
    assert observed["faults"]["stale_reads"] + observed["healthy"]["stale_reads"] > 0


def test_r1_w1_healthy_prediction_is_close_to_what_reads_right_after_a_write_saw(
    tmp_path: Path,
) -> None:
    """The issue's check on a real cluster: PBS within 2x or 0.05 absolute of the
    observed stale-read rate of the reads right after a write (0-5 ms after its ack).
    Measured at this setting (``bench/pbs.py --rate 100 --seconds 24``), 12 runs:
    predicted 0.001-0.019, observed 0-0.02, the largest gap 0.019. At 200 ops/s on this
    2-core machine the prediction depends on how loaded it is (0.004-0.034 in 13 runs
    one hour, 0.04-0.086 in 8 the next, against 0-0.025 observed): PBS draws the
    replicas' service times independently, while three replicas on one machine slow
    down together. So the test runs where the machine is not the bottleneck."""
    # 40 s: 73 reads right after a write in 24 s here, 24 in a CI run on a slower moment
    # staggered: with ops on fixed 10 ms ticks a read starts 10 ms minus the write's latency
    # after it, so this count rode on how fast the machine syncs (1 to 73 in 40 s)
    results = run(
        tmp_path, "one", [], seed=1, time_limit=40.0, rate=100.0, concurrency=10, stagger=True
    )
    compared = results["pbs"]["right_after_a_write"]
    assert compared["available"], compared
    assert compared["reads"] >= 30
    assert compared["within_2x_or_0.05"], compared
    assert 0 < compared["client_hops_ms"] < 50


def test_quorum_held_to_linearizable_under_partitions_and_kills(tmp_path: Path) -> None:
    """The issue's run: quorum reads, --expect linearizable, partitions and kills.

    Partial writes that a later read could expose are usually overwritten within
    milliseconds, so one short run catches quorum only now and then (bench/harness.py
    measures the rate over many seeds). Here every run must reach a verdict, and the
    rate is printed.
    """
    outcomes = []
    for seed in (1, 2, 3):
        results = run(tmp_path, "quorum", ["partition", "kill"], seed=seed, expect="linearizable")
        assert results["linearizability"]["verdict"] in ("linearizable", "not linearizable")
        assert results["verdict"] == (
            "held" if results["checks"]["linearizable"] == "linearizable" else "violated"
        )
        outcomes.append(results["checks"]["linearizable"])
    caught = outcomes.count("not linearizable")
    print(f"quorum held to linearizable: caught in {caught} of {len(outcomes)} seeds")


def test_quorum_is_caught_under_clock_skew(tmp_path: Path) -> None:
    """Under clock skew, last-writer-wins makes quorum visibly non-linearizable."""
    outcomes = []
    for seed in (1, 2, 3):
        results = run(tmp_path, "quorum", ["clock"], seed=seed, expect="linearizable")
        outcomes.append(results["checks"]["linearizable"])
        if outcomes[-1] == "not linearizable":
            assert results["verdict"] == "violated"
            per_key = results["linearizability"]["per_partition"]
            assert any(p.get("counterexample") for p in per_key), "a violation is explained"
            break
    assert "not linearizable" in outcomes, outcomes


def test_clock_skew_shows_lost_writes(tmp_path: Path) -> None:
    lost = 0
    for seed in (1, 2):
        results = run(tmp_path, "quorum", ["clock"], seed=seed)
        assert results["promise"] == "no-stale-reads"
        lost += results["staleness"]["lost_writes"]
        if lost:
            break
    assert lost > 0


def test_lying_disk_loses_acknowledged_writes_and_the_harness_says_so(tmp_path: Path) -> None:
    # Only writes the liar coordinates for keys it replicates can be lost, and each
    # process talks to one node (p mod 5). Ten processes pin two of them to the liar
    # for the whole run (a process renumbered after an info stays on its node), and
    # the rate gives them a dozen such writes per lying period, not one or two.
    results = run(
        tmp_path, "one", ["lying-disk"], seed=2, workload="set", concurrency=10, rate=300.0
    )
    durability = results["durability"]
    assert durability["lost"] > 0, durability
    assert results["checks"]["durable"] == "violated"
    assert results["verdict"] == "violated"
    assert any(r.endswith("acknowledged writes lost") for r in results["reasons"])


def test_an_honest_disk_keeps_every_acknowledged_write_through_kills(tmp_path: Path) -> None:
    results = run(tmp_path, "one", ["kill"], seed=2, workload="set")
    durability = results["durability"]
    assert durability["acknowledged_writes"] > 100
    assert durability["lost"] == 0 and durability["unchecked"] == 0, durability
    assert results["checks"]["durable"] == "held"
