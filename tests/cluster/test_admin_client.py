"""The admin client against real nodes: each method returns what the node says (and
what it has done), and a node that is down fails at once with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from kvstore import Client
from kvstore.cluster.admin import AdminClient, SyncAdminClient
from kvstore.core.ring import Ring
from kvstore.pb import kvstore_pb2 as pb
from kvstore.security.tls import client_files
from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import FAST


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.05)


async def sees_all(admin: AdminClient, state: str) -> bool:
    """The node sees every peer in ``state``."""
    return {p.state for p in (await admin.status()).peers} == {state}


async def test_each_method_returns_what_the_node_says(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster(nodes=4, **FAST)
    cfg = cluster.config
    ring = Ring(cfg.node_ids, cfg.vnodes)
    others = [n for n in cfg.node_ids if n != "n2"]

    # the config's own identity (no dialer given): the admin client
    async with AdminClient(cfg, "n2") as admin:
        status = await admin.status()
        assert (status.node, status.cluster, status.address) == (
            "n2",
            "test",
            cfg.node("n2").address,
        )
        assert status.pid == cluster.nodes["n2"].pid
        assert status.tls and status.faults_enabled
        assert sorted(p.node for p in status.peers) == others
        assert await admin.echo(b"ping") == b"ping"

    # read_local: each replica's own version of a key written through the client
    key = b"admin-key"
    async with Client.from_config(cfg) as client:
        written = await client.put(key, b"v1", w="all")
    owners = ring.primaries(key, cfg.n)
    for node in cfg.node_ids:
        async with cluster.admin(node) as admin:
            reply = await admin.read_local(key)
        assert reply.version.node == node
        if node in owners:
            assert reply.version.found and not reply.version.tombstone
            ts = reply.version.ts
            assert (ts.wall, ts.logical, ts.node) == tuple(written.ts)
            assert reply.value == b"v1"
        else:
            assert not reply.version.found and reply.value == b""

    # set_faults round-trips, and the node then behaves so: n2 cut off from every peer
    # sees them all down, and misses a write it owns
    missed = next(
        k for i in range(1000) if {"n1", "n2"} <= set(ring.primaries(k := f"m-{i}".encode(), cfg.n))
    )
    async with cluster.admin("n2") as n2, cluster.admin("n1") as n1:
        faults = pb.Faults(isolate_from=others, delay_ms=7, lose_hints=True)
        back = await n2.set_faults(faults)
        assert (list(back.isolate_from), back.delay_ms, back.lose_hints) == (others, 7, True)
        assert (back.drop, back.lying_disk, list(back.planted_bugs)) == (0.0, False, [])
        await until(lambda: sees_all(n2, "down"), "n2 sees every peer down")
        elsewhere = [n for n in cfg.node_ids if n != "n2"]
        async with Client(
            [cfg.node(n).address for n in elsewhere],
            node_ids=elsewhere,
            n=cfg.n,
            tls=client_files(cfg),
        ) as client:
            await client.put(missed, b"while-cut-off", w="quorum", sloppy=False)
        assert not (await n2.read_local(missed)).version.found
        assert (await n1.read_local(missed)).value == b"while-cut-off"

        healed = await n2.set_faults(pb.Faults())
        assert (list(healed.isolate_from), healed.delay_ms, healed.lose_hints) == ([], 0, False)
        await until(lambda: sees_all(n2, "up"), "n2 sees every peer up")
        await until(lambda: sees_all(n1, "up"), "n1 sees every peer up")

        # repair: a reply naming the node, one exchange per peer asked, and n2 repaired
        report = await n1.repair(["n2"], timeout=30)
        assert report.node == "n1"
        assert [(p.peer, p.error) for p in report.peers] == [("n2", "")]
        assert report.exchanges == 1
        assert (await n2.read_local(missed)).value == b"while-cut-off"
        everyone = await n1.repair(timeout=30)
        assert everyone.node == "n1" and not [p.error for p in everyone.peers if p.error]
        assert sorted(p.peer for p in everyone.peers) == [n for n in cfg.node_ids if n != "n1"]

    # the blocking twin says the same
    with SyncAdminClient(cfg, "n3") as sync:
        assert sync.status().node == "n3"
        assert sync.echo(b"x") == b"x"
        assert sync.read_local(key).version.found == ("n3" in owners)


async def test_a_node_that_is_down_is_unavailable_within_the_timeout(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(nodes=3)
    cfg = cluster.config
    cluster.kill("n3")
    async with AdminClient(cfg, "n3") as admin:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "status": lambda: admin.status(timeout=3),
            "repair": lambda: admin.repair(timeout=3),
            "read_local": lambda: admin.read_local(b"k", timeout=3),
            "set_faults": lambda: admin.set_faults(pb.Faults(), timeout=3),
            "echo": lambda: admin.echo(timeout=3),
        }
        for name, call in calls.items():
            began = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, name
            assert time.monotonic() - began < 2.5, name  # at once, not at the deadline

        # asked to wait for the node, a call waits until its timeout, and no longer
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as waited:
            await admin.status(timeout=0.5, wait_for_ready=True)
        assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.4 < time.monotonic() - began < 2.5

    with SyncAdminClient(cfg, "n3") as sync, pytest.raises(grpc.RpcError) as blocking:
        sync.status(timeout=3)
    assert isinstance(blocking.value, grpc.Call)
    assert blocking.value.code() == grpc.StatusCode.UNAVAILABLE
    async with AdminClient(cfg, "n1") as alive:  # the others are untouched
        assert (await alive.status()).node == "n1"
