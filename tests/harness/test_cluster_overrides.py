"""``--cluster KEY=VALUE``: checked before a run starts, and used by both worlds."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.harness.cli import cluster_overrides
from kvstore.harness.runner import cluster_config
from kvstore.sim.run import sim_config


def test_values_are_typed_and_checked_by_the_config_loader() -> None:
    got = cluster_overrides(
        ["anti_entropy_interval_s=0.5", "tombstone_grace_s=2", "hint_window_s=1", "sloppy=true"]
    )
    assert got == {
        "anti_entropy_interval_s": 0.5,
        "tombstone_grace_s": 2,
        "hint_window_s": 1,
        "sloppy": True,
    }


@pytest.mark.parametrize(
    ("pairs", "named"),
    [
        (["bogus=1"], "cluster.bogus"),
        (["tombstone_grace_s=1"], "cluster.tombstone_grace_s"),  # purging needs repair
        (["n=9"], "cluster.n"),
        (["noequals"], "KEY=VALUE"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(pairs: list[str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        cluster_overrides(pairs)


def test_both_worlds_run_with_the_overrides(tmp_path: Path) -> None:
    overrides = {"anti_entropy_interval_s": 0.5, "tombstone_grace_s": 3.0, "hint_window_s": 1.0}
    real = config_mod.load(cluster_config(tmp_path, None, overrides))
    simulated = sim_config(**overrides)
    for cfg in (real, simulated):
        assert cfg.anti_entropy_interval_s == 0.5
        assert cfg.tombstone_grace_s == 3.0
        assert cfg.request_timeout_ms == 1000  # the harness's own settings stay
