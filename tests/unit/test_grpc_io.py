"""The environment a node process starts with (``kvstore.net.grpc_io``, one layer)."""

from __future__ import annotations

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
