"""The ring file: durable, validated field by field, and a config that would change the
membership under a node is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.core.epochs import AcceptorState, Ballot, RingRecord
from kvstore.errors import ConfigError
from kvstore.node.ring_store import (
    FileRingStore,
    MemoryRingStore,
    RingStoreError,
    configured_ring,
    encode_state,
    open_ring,
)

FIVE = tuple((f"n{i}", f"127.0.0.1:{7000 + i}") for i in range(1, 6))
ONE = RingRecord(1, FIVE, 3, 16)
VOTED = AcceptorState(ONE, Ballot(3, "op"), (Ballot(3, "op"), RingRecord(2, FIVE[1:], 3, 16)))


def _config(tmp: Path, nodes: int = 5, **cluster: object) -> config_mod.ClusterConfig:
    return config_mod.parse(
        {
            "cluster": {"name": "r", "n": 3, "vnodes": 16, **cluster},
            "tls": "off",
            "nodes": [
                {"id": f"n{i}", "address": f"127.0.0.1:{7000 + i}", "data_dir": f"d{i}"}
                for i in range(1, nodes + 1)
            ],
        },
        base=tmp,
    )


def test_a_saved_state_loads_back_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FileRingStore(tmp_path / "dir" / "ring.json")
    assert store.load() is None
    store.save(VOTED)
    assert store.load() == VOTED
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["ring.json"]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: "{not json", "not a ring file"),
        (lambda d: {**d, "format": 9}, "format 9"),
        (lambda d: {k: v for k, v in d.items() if k != "chosen"}, "missing 'chosen'"),
        (lambda d: {**d, "chosen": {**d["chosen"], "epoch": -1}}, "'epoch' must be a non-neg"),
        (lambda d: {**d, "chosen": {**d["chosen"], "epoch": 0}}, "epochs start at 1"),
        (lambda d: {**d, "chosen": {**d["chosen"], "n": 9}}, "N=9 needs 1..5"),
        (lambda d: {**d, "promised": [1]}, "a ballot is"),
        (
            lambda d: {**d, "accepted": {**d["accepted"], "ring": d["chosen"]}},
            "a vote for epoch 1 after 1",
        ),
        (
            lambda d: {**d, "chosen": {**d["chosen"], "members": [{"id": 5}]}},
            "members[0]: 'id' must be a str",
        ),
    ],
)
def test_a_damaged_file_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, mutate: object, problem: str
) -> None:
    path = tmp_path / "ring.json"
    changed = mutate(encode_state(VOTED))  # type: ignore[operator]
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(RingStoreError, match=re.escape(problem)) as caught:
        FileRingStore(path).load()
    assert str(path) in str(caught.value)


def test_a_new_node_starts_at_epoch_one_and_keeps_it(tmp_path: Path) -> None:
    store = MemoryRingStore()
    state = open_ring(store, _config(tmp_path))
    assert state is not None and state.chosen == configured_ring(_config(tmp_path))
    assert state.chosen.epoch == 1
    assert store.load() == state and open_ring(store, _config(tmp_path)) == state


@pytest.mark.parametrize(
    ("other", "shown"),
    [
        ({"nodes": 6}, "n1, n2, n3, n4, n5, n6"),
        ({"nodes": 4}, "N=3"),
        ({"vnodes": 8}, "vnodes=8"),
    ],
)
def test_a_config_that_changes_the_membership_is_refused(
    tmp_path: Path, other: dict[str, int], shown: str
) -> None:
    store = MemoryRingStore()
    open_ring(store, _config(tmp_path))
    nodes = other.pop("nodes", 5)
    with pytest.raises(ConfigError, match="not the ring this node serves") as caught:
        open_ring(store, _config(tmp_path, nodes, **other))
    assert shown in str(caught.value) and "epoch 1" in str(caught.value)


def test_addresses_follow_the_config_and_the_epoch_stays(tmp_path: Path) -> None:
    store = MemoryRingStore()
    open_ring(store, _config(tmp_path))
    store.save(AcceptorState(RingRecord(4, ONE.members, 3, 16)))
    raw = _config(tmp_path)
    moved = config_mod.parse(
        {
            "cluster": {"name": "r", "n": 3, "vnodes": 16},
            "tls": "off",
            "nodes": [
                {"id": n.id, "address": n.address.replace("700", "800"), "data_dir": f"d{n.id}"}
                for n in raw.nodes
            ],
        },
        base=tmp_path,
    )
    state = open_ring(store, moved)
    assert state is not None and state.chosen.epoch == 4
    assert dict(state.chosen.members)["n1"] == "127.0.0.1:8001"
