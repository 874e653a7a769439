"""Real faults: SIGKILL, SIGSTOP, whole-cluster crash; errors keep the taxonomy."""

from __future__ import annotations

import asyncio
import functools

import pytest

from kvstore import (
    Client,
    CoordinatorUnreachable,
    QuorumFailed,
    RequestTimeout,
    Unavailable,
)
from kvstore.core.ring import Ring
from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import views, wait_until


def primaries(cluster_config: object, key: str) -> tuple[str, ...]:
    cfg = cluster_config
    return Ring(cfg.node_ids, cfg.vnodes).primaries(key.encode(), cfg.n)  # type: ignore[attr-defined]


async def test_one_replica_killed(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    key = "victim-key"
    victim = primaries(cluster.config, key)[0]  # also the client's first coordinator
    cluster.kill(victim)
    async with Client.from_config(cluster.config) as client:
        await client.put(key, "a", w="one")
        await client.put(key, "b", w="quorum")
        assert await client.get(key, r="one") == b"b"
        assert await client.get(key, r="quorum") == b"b"
        with pytest.raises(QuorumFailed) as write_error:
            await client.put(key, "c", w="all", sloppy=False)
        assert not write_error.value.definite  # it landed on the two live replicas
        assert victim in str(write_error.value)
        with pytest.raises(QuorumFailed) as read_error:
            await client.get(key, r="all")
        assert read_error.value.definite  # a failed read has no effect
        # the failed W=all write is on the live replicas: indefinite was right
        assert await client.get(key, r="quorum") == b"c"
        cluster.start_node(victim)

        # W=all works once every coordinator has heard from every peer: the restarted
        # node's links connect in the background, and the others' links to it may sit
        # in their reconnect backoff (up to 1 s) after failing while it was dead; until
        # then a write to it is not sent. (Waiting for the victim's view alone failed
        # one run in five: the client's coordinator was another node.)
        def all_up(node: str) -> bool:
            return set(views(cluster, node).values()) == {"up"}

        for node in cluster.config.node_ids:
            await asyncio.to_thread(
                wait_until, functools.partial(all_up, node), f"{node} sees every peer up"
            )
        await client.put(key, "d", w="all")
        assert await client.get(key, r="all") == b"d"


async def test_all_replicas_of_a_key_down_is_definite(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    key = "lonely"
    for node in primaries(cluster.config, key):
        cluster.kill(node)
    async with Client.from_config(cluster.config) as client:
        with pytest.raises(Unavailable) as info:
            await client.put(key, "x", w="one", sloppy=False)
        assert info.value.definite


async def test_whole_cluster_down_is_definite_unreachable(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    cluster.stop()
    async with Client.from_config(cluster.config, timeout=2) as client:
        with pytest.raises(CoordinatorUnreachable) as info:
            await client.put("k", "v")
        assert info.value.definite


async def test_paused_replica_times_out_indefinitely(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    key = "paused-key"
    replicas = primaries(cluster.config, key)
    async with Client.from_config(cluster.config) as client:
        await client.put(key, "p", w="all")  # the coordinator's links are now open
    cluster.pause(replicas[1])
    try:
        async with Client.from_config(cluster.config) as client:
            await client.put(key, "q", w="quorum", timeout=1.0)  # the other two answer
            with pytest.raises(RequestTimeout) as info:
                await client.put(key, "r", w="all", sloppy=False, timeout=0.5)
            assert not info.value.definite
    finally:
        cluster.resume(replicas[1])


async def test_acknowledged_writes_survive_sigkill_of_every_node(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster()
    async with Client.from_config(cluster.config) as client:
        for i in range(50):
            await client.put(f"durable-{i}", f"value-{i}", w="all")
        await client.delete("durable-0", w="all")
    for node in cluster.config.node_ids:
        cluster.kill(node)
    for node in cluster.config.node_ids:
        cluster.start_node(node, wait=False)
    cluster.wait_ready()
    async with Client.from_config(cluster.config) as client:
        assert await client.get("durable-0", r="one") is None
        for i in range(1, 50):
            # r=one reads a single replica: each one must hold the value
            assert await client.get(f"durable-{i}", r="one") == f"value-{i}".encode()
        traced = await client.get("durable-7", r="all", trace=True)
        assert all(r.found for r in traced.replicas)
