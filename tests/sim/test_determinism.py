"""Determinism is a tested property: one seed, one history, in any process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from kvstore.harness.drive import RunOptions
from kvstore.harness.guarantees import Setting
from kvstore.sim.run import run_seed

NEMESES = ["partition", "kill", "pause", "clock", "drop", "delay"]


def _options(seed: int) -> RunOptions:
    return RunOptions(
        Setting("quorum", None, None, False, "off"),
        nemeses=NEMESES,
        time_limit=4.0,
        seed=seed,
        nemesis_interval=0.7,
    )


def _digest(folder: Path) -> tuple[str, str]:
    return (
        hashlib.sha256((folder / "history.jsonl").read_bytes()).hexdigest(),
        hashlib.sha256((folder / "network.trace").read_bytes()).hexdigest(),
    )


def test_the_same_seed_twice_gives_the_same_history_bytes(tmp_path: Path) -> None:
    first = run_seed(_options(5), tmp_path / "a", keep=True)
    second = run_seed(_options(5), tmp_path / "b", keep=True)
    assert first.folder is not None and second.folder is not None
    assert _digest(first.folder) == _digest(second.folder)
    assert first.steps == second.steps
    # the run did something worth replaying: faults, failures, indefinite outcomes
    assert first.results["ops"].get("fail", 0) + first.results["ops"].get("info", 0) > 0


def test_another_seed_gives_another_history(tmp_path: Path) -> None:
    a = run_seed(_options(5), tmp_path / "a", keep=True)
    b = run_seed(_options(6), tmp_path / "b", keep=True)
    assert a.folder is not None and b.folder is not None
    assert _digest(a.folder)[0] != _digest(b.folder)[0]


SCRIPT = """
import sys
from pathlib import Path
from tests.sim.test_determinism import _options
from kvstore.sim.run import run_seed
run_seed(_options(int(sys.argv[1])), Path(sys.argv[2]), keep=True)
"""


def test_two_processes_with_different_hash_seeds_agree(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    digests = []
    for hash_seed in ("1", "4242"):
        folder = tmp_path / f"h{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-c", SCRIPT, "7", str(folder)],
            cwd=root,
            env=env,
            check=True,
            timeout=120,
        )
        digests.append(_digest(folder))
    assert digests[0] == digests[1]
