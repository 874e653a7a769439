"""The command line against a real cluster: exit codes and one-line reasons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kvstore import config as config_mod
from kvstore.cluster.local import LocalCluster, ensure_certs, pid_alive
from tests.cluster.conftest import ClusterFactory, make_config


def kv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvstore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_put_get_delete(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    cfg = str(cluster.config_path)
    put = kv("put", "cli-key", "hello world", "--config", cfg, "--w", "all")
    assert put.returncode == 0, put.stderr
    assert put.stdout.startswith("ok ts=")
    got = kv("get", "cli-key", "--config", cfg, "--consistency", "quorum", "--trace")
    assert got.returncode == 0 and got.stdout == "hello world\n"
    assert got.stderr.count("primary") == 3
    one_node = kv(
        "get", "cli-key", "--node", cluster.config.nodes[0].address, "--r", "1", "--config", cfg
    )
    assert one_node.returncode == 0 and one_node.stdout == "hello world\n"
    # explicit files instead of the config's: the same admin client, named by hand
    folder = cluster.config.tls_config.certs_dir
    by_hand = ["--ca", f"{folder}/ca.crt", "--cert", f"{folder}/client.admin.crt"]
    by_hand += ["--key", f"{folder}/client.admin.key"]
    explicit = kv("get", "cli-key", "--node", cluster.config.nodes[1].address, *by_hand)
    assert explicit.returncode == 0 and explicit.stdout == "hello world\n", explicit.stderr
    assert kv("delete", "cli-key", "--config", cfg).returncode == 0
    gone = kv("get", "cli-key", "--config", cfg, "--r", "all")
    assert gone.returncode == 0 and gone.stdout == "" and "not found" in gone.stderr


def test_bad_input_exits_2_with_a_reason(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    cfg = str(cluster.config_path)
    too_many = kv("get", "k", "--config", cfg, "--r", "4")
    assert too_many.returncode == 2 and "N=3" in too_many.stderr
    assert len(too_many.stderr.strip().splitlines()) == 1
    bad_level = kv("put", "k", "v", "--config", cfg, "--w", "lots")
    assert bad_level.returncode == 2 and "not a level" in bad_level.stderr
    empty_key = kv("put", "", "v", "--config", cfg)
    assert empty_key.returncode == 2 and "empty" in empty_key.stderr
    missing = kv("get", "k", "--config", "/nonexistent/cluster.toml")
    assert missing.returncode == 2 and "no such config file" in missing.stderr
    usage = kv("get")
    assert usage.returncode == 2


def test_missing_certificates_exit_2_naming_the_file(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)  # never started: no certificates were made
    result = kv("get", "k", "--config", str(cfg))
    assert result.returncode == 2
    assert "ca.crt: no such CA certificate file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_exits_1(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)  # nothing started on these ports
    ensure_certs(config_mod.load(cfg))
    result = kv("get", "k", "--config", str(cfg))
    assert result.returncode == 1
    assert "CoordinatorUnreachable (definite)" in result.stderr


def test_cluster_up_status_down(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, engine="memory")
    try:
        up = kv("cluster", "up", "--config", str(cfg))
        assert up.returncode == 0, up.stdout + up.stderr
        again = kv("cluster", "up", "--config", str(cfg))
        assert again.returncode == 1 and "already running" in again.stdout
        status = kv("cluster", "status", "--config", str(cfg), "--json")
        assert status.returncode == 0, status.stdout
        nodes = json.loads(status.stdout)["nodes"]
        assert [n["health"] for n in nodes] == ["up"] * 5
        # every node serves epoch 1, kept beside its data (a memory engine's too)
        assert {n["ring_epoch"] for n in nodes} == {1}
        assert (tmp_path / "data" / "n1" / "ring.json").is_file()
        pids = [n["pid"] for n in nodes]
        assert all(pid_alive(pid) for pid in pids)
        down = kv("cluster", "down", "--config", str(cfg))
        assert down.returncode == 0 and "stopped n1" in down.stdout
        assert not any(pid_alive(pid) for pid in pids)
        after = kv("cluster", "status", "--config", str(cfg), "--json")
        assert after.returncode == 1
        assert {n["health"] for n in json.loads(after.stdout)["nodes"]} == {"down"}
    finally:
        from kvstore import config as config_mod

        leftover = LocalCluster(config_mod.load(cfg), cfg)
        leftover.load_state()
        leftover.stop()
