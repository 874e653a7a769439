"""The environment a node process starts with (``kvstore.net.grpc_io``, one layer)."""

from __future__ import annotations

import os
import subprocess
import sys

from kvstore.net import grpc_io


def test_a_node_gets_the_node_io_stack_and_keeps_the_rest() -> None:
    env = grpc_io.node_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", grpc_io.ENV: grpc_io.NODE_EXPERIMENTS}
    assert grpc_io.chosen(env) and not grpc_io.chosen({"PATH": "/bin"})


def test_an_operators_setting_wins_even_when_empty() -> None:
    for theirs in ("", "-event_engine_client"):
        assert grpc_io.node_environment({grpc_io.ENV: theirs})[grpc_io.ENV] == theirs
        assert grpc_io.chosen({grpc_io.ENV: theirs})


def test_the_callers_mapping_is_not_changed() -> None:
    mine = {"PATH": "/bin"}
    grpc_io.node_environment(mine)
    assert mine == {"PATH": "/bin"}


def _import_grpc_with(experiments: str) -> str:
    env = {**os.environ, grpc_io.ENV: experiments}
    done = subprocess.run(
        [sys.executable, "-c", "import grpc"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_installed_grpc_knows_every_experiment_a_node_turns_off() -> None:
    """An upgrade of grpcio that drops one of these names would only log a line and run
    every node on the default stack; this says so instead."""
    assert "Unknown experiment" not in _import_grpc_with(grpc_io.NODE_EXPERIMENTS)
    # the check can fail: grpc does name an experiment it does not know
    assert "Unknown experiment: no_such_thing" in _import_grpc_with(
        grpc_io.NODE_EXPERIMENTS + ",-no_such_thing"
    )
