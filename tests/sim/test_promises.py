"""The harness's promises, checked in the simulator: what must hold holds over many
seeds, and what must break is caught within a bounded number of seeds.

Runs are short (4 simulated seconds, a fault period every 0.7 s), so each seed costs
about half a second of wall time. Every bound was measured: the catch rates and the
first catching seeds are in the docstrings (rerun them with ``kvstore sim ...
--seeds 0-29``); bounds leave room for a schedule change to move the
first catch several seeds later.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvstore.harness.drive import RunOptions
from kvstore.harness.guarantees import Setting
from kvstore.sim.run import run_seed

ALL_FAULTS = ["partition", "kill", "pause", "clock", "drop", "delay"]


def _setting(consistency: str | None = None, r: int | None = None, w: int | None = None) -> Setting:
    return Setting(consistency, r, w, False, "off")


def _run(tmp: Path, options: RunOptions) -> dict[str, Any]:
    return run_seed(options, tmp / f"seed-{options.seed}").results


Check = Callable[[dict[str, Any]], bool]


def _first(tmp: Path, make: Callable[[int], RunOptions], caught: Check, bound: int) -> int | None:
    """The first seed below ``bound`` whose run ``caught`` says yes to."""
    for seed in range(bound):
        if caught(_run(tmp, make(seed))):
            return seed
    return None


def test_linearizable_holds_under_every_fault(tmp_path: Path) -> None:
    """Measured: 0 violations in 200 seeds of 10 s (bench/README.md); here 24 of 4 s."""
    failed = 0
    for seed in range(24):
        options = RunOptions(
            _setting("linearizable"),
            nemeses=ALL_FAULTS,
            time_limit=4,
            nemesis_interval=0.7,
            seed=seed,
        )
        results = _run(tmp_path, options)
        assert results["verdict"] == "held", (seed, results["checks"], results["reasons"])
        failed += results["ops"].get("fail", 0)
    assert failed > 0  # the faults did bite


def test_quorum_held_to_linearizable_is_caught(tmp_path: Path) -> None:
    """Measured on seeds 0-29 with the faults of the simulator's own example
    (partition,kill,pause,clock,drop), two keys at 300 ops/s: caught in 16 (first: seed
    0), each through writes lost to clock skew. Without the clock nemesis the anomaly
    needs a partly applied write read twice, and was caught in 2 of 30."""

    def make(seed: int) -> RunOptions:
        return RunOptions(
            _setting("quorum"),
            nemeses=["partition", "kill", "pause", "clock", "drop"],
            time_limit=4,
            nemesis_interval=0.7,
            keys=2,
            rate=300,
            seed=seed,
            expect="linearizable",
        )

    seed = _first(tmp_path, make, lambda r: r["checks"]["linearizable"] == "not linearizable", 12)
    assert seed is not None


def test_one_under_partition_shows_stale_reads(tmp_path: Path) -> None:
    """Measured: stale reads in 20 of 20 seeds."""

    def make(seed: int) -> RunOptions:
        return RunOptions(
            _setting("one"), nemeses=["partition"], time_limit=4, nemesis_interval=0.7, seed=seed
        )

    assert _first(tmp_path, make, lambda r: r["staleness"]["stale_reads"] > 0, 3) is not None


def test_a_lying_disk_loses_acknowledged_writes(tmp_path: Path) -> None:
    """Measured: acknowledged writes lost in 16 of 20 seeds (W=1, the set workload)."""

    def make(seed: int) -> RunOptions:
        return RunOptions(
            _setting(None, 1, 1),
            workload="set",
            nemeses=["lying-disk"],
            time_limit=4,
            nemesis_interval=0.7,
            seed=seed,
        )

    def lost(results: dict[str, Any]) -> bool:
        return bool((results.get("durability") or {}).get("lost"))

    assert _first(tmp_path, make, lost, 4) is not None


def test_clock_skew_loses_writes(tmp_path: Path) -> None:
    """Measured: lost writes in 19 of 20 seeds (quorum, clock nemesis), reported as
    allowed: under skew last-writer-wins may lose a write, and says so."""

    def make(seed: int) -> RunOptions:
        return RunOptions(
            _setting("quorum"), nemeses=["clock"], time_limit=4, nemesis_interval=0.7, seed=seed
        )

    def lost(results: dict[str, Any]) -> bool:
        return bool(results["staleness"]["lost_writes"] > 0)

    assert _first(tmp_path, make, lost, 3) is not None


def _linearizable(seed: int, nemeses: list[str], plant: tuple[str, ...], **kw: Any) -> RunOptions:
    return RunOptions(
        _setting("linearizable"),
        nemeses=nemeses,
        time_limit=4,
        nemesis_interval=0.7,
        seed=seed,
        plant=plant,
        **kw,
    )


def test_a_linearizable_write_without_its_query_round_is_caught(tmp_path: Path) -> None:
    """Planted ``abd-no-query``. Measured on seeds 0-29: caught in 15 (first: seed 5)."""
    nemeses = ["partition", "kill", "pause", "clock", "delay"]
    seed = _first(
        tmp_path,
        lambda s: _linearizable(s, nemeses, ("abd-no-query",)),
        lambda r: r["verdict"] == "violated",
        20,
    )
    assert seed is not None
    assert _run(tmp_path, _linearizable(seed, nemeses, ()))["verdict"] == "held"  # no false alarm


def test_a_linearizable_read_without_its_write_back_is_caught(tmp_path: Path) -> None:
    """Planted ``abd-no-write-back``: it needs a write that reached one replica (lost
    messages) read twice in a row, so the drop nemesis. Measured on seeds 0-39, with
    ABD's reads asking a majority first: caught in 5 (first: seed 4; asking all three,
    it was 6 of seeds 0-19, first 5); in real time (bench/harness.py) it was caught in
    0 of 12 runs. Following every write with reads of its key did not raise the rate (6 of 20 with
    three such reads, too), so the workload does not do that."""
    seed = _first(
        tmp_path,
        lambda s: _linearizable(s, ["drop"], ("abd-no-write-back",)),
        lambda r: r["verdict"] == "violated",
        40,
    )
    assert seed is not None
    assert _run(tmp_path, _linearizable(seed, ["drop"], ()))["verdict"] == "held"


def _quorum(seed: int, nemeses: list[str], plant: tuple[str, ...], **kw: Any) -> RunOptions:
    return RunOptions(_setting("quorum"), nemeses=nemeses, seed=seed, plant=plant, **kw)


def test_strict_quorums_that_count_fallback_acks_are_caught(tmp_path: Path) -> None:
    """Planted ``strict-counts-fallbacks``: a strict write acknowledged by a fallback is
    missed by a strict read on the other side of a partition. Fault periods of 2 s (the
    failure detector needs 0.8 s to call a peer down, and only then are fallbacks
    used). Measured on seeds 0-19: caught in 19 (first: seed 1); unplanted, 0."""
    kw: dict[str, Any] = {"time_limit": 8, "nemesis_interval": 2.0}
    seed = _first(
        tmp_path,
        lambda s: _quorum(s, ["partition"], ("strict-counts-fallbacks",), **kw),
        lambda r: r["verdict"] == "violated",
        10,
    )
    assert seed is not None
    assert _run(tmp_path, _quorum(seed, ["partition"], (), **kw))["verdict"] == "held"


def test_read_resolution_that_keeps_the_first_reply_is_caught(tmp_path: Path) -> None:
    """Planted ``first-reply-wins``: a quorum read returns whichever replica answered
    first, not the newest version. Measured on seeds 0-19 under kill,partition: caught
    in 20 (first: seed 0)."""
    kw: dict[str, Any] = {"time_limit": 4, "nemesis_interval": 0.7}
    seed = _first(
        tmp_path,
        lambda s: _quorum(s, ["kill", "partition"], ("first-reply-wins",), **kw),
        lambda r: r["verdict"] == "violated",
        5,
    )
    assert seed is not None
    assert _run(tmp_path, _quorum(seed, ["kill", "partition"], (), **kw))["verdict"] == "held"


def _outage(seed: int, grace_s: float) -> RunOptions:
    """A node killed for the last 3 s of the load, on many keys written rarely, so some
    key's last write is a delete the dead node misses."""
    return RunOptions(
        _setting("quorum"),
        workload="deletes",
        nemeses=["kill"],
        time_limit=7,
        nemesis_interval=4,
        keys=400,
        seed=seed,
        cluster={
            "anti_entropy_interval_s": 0.5,
            "tombstone_grace_s": grace_s,
            "hint_window_s": min(1.0, grace_s / 2),
        },
    )


def test_a_replica_held_out_past_the_grace_period_resurrects_deletes(tmp_path: Path) -> None:
    """Cassandra's gc_grace hazard, which the harness must not miss: the other replicas
    purge a tombstone the dead node never got, and when it returns anti-entropy copies
    the deleted value back. Measured on seeds 0-5: with a 1.5 s grace, 4 to 8 resurrected
    deletes in every seed; with a 30 s grace, none."""
    short = _run(tmp_path, _outage(0, 1.5))
    assert short["checks"]["no-resurrected-deletes"] == "violated"
    assert short["verdict"] == "violated"
    example = short["resurrected_deletes"]["examples"][0]
    assert example["delete"] and example["write"] and example["read"]
    long = _run(tmp_path, _outage(0, 30.0))
    assert long["checks"]["no-resurrected-deletes"] == "held", long["resurrected_deletes"]


def _membership(seed: int, level: str, nemeses: list[str], plant: tuple[str, ...]) -> RunOptions:
    """Nodes removed from the ring (live, dead, or with the operator killed mid-change)
    and added back (wiped, joining) while the load runs, on 200 keys: a key is then
    often left unwritten across a change, so what a change fails to carry is read back
    missing rather than overwritten first."""
    return RunOptions(
        _setting(level),
        nemeses=nemeses,
        time_limit=8,
        nemesis_interval=1.0,
        keys=200,
        seed=seed,
        plant=plant,
    )


def test_membership_changes_under_faults_keep_linearizable(tmp_path: Path) -> None:
    """Measured: 0 violations in 60 seeds with every fault (linearizable), 40 with kill
    and partition at quorum, 40 with membership alone; here 12 seeds. Since heals also
    add brand-new machines and the epoch fence is in: 0 in 60 (linearizable, every
    fault) and 0 in 40 (quorum, kill and partition). (With the planner's
    old source choice, a replica that keeps the range, 5 of 30 quorum seeds under kill
    and partition read stale values.)"""
    changes = 0
    fresh = 0
    for seed in range(12):
        options = _membership(seed, "linearizable", ["membership", *ALL_FAULTS], ())
        results = _run(tmp_path, options)
        assert results["verdict"] == "held", (seed, results["checks"], results["reasons"])
        changes += sum(i[2] == "membership" for i in results["nemesis_intervals"])
        fresh += results["machines"] != [f"n{i}" for i in range(1, 6)]
    assert changes >= 3  # measured: 7 removals and re-adds in these seeds
    assert fresh >= 1  # measured: 3 of these seeds end with brand-new machines in (n6, n7)


def test_a_node_that_loses_the_ranges_streamed_to_it_is_caught(tmp_path: Path) -> None:
    """Planted ``membership-no-stream``: the node gaining ranges drops every chunk.
    Measured on seeds 0-9: caught in 9 at quorum (first: seed 0)."""
    seed = _first(
        tmp_path,
        lambda s: _membership(s, "quorum", ["membership"], ("membership-no-stream",)),
        lambda r: r["verdict"] == "violated",
        5,
    )
    assert seed is not None
    assert _run(tmp_path, _membership(seed, "quorum", ["membership"], ()))["verdict"] == "held"
