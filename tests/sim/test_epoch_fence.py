"""A coordinator behind the cluster's ring epoch never serves with its old ring.

Four of five nodes learn a ring without n5 while n1 has not heard of it yet (no virtual
time passes, so no heartbeat can have told it). n1 then coordinates a write of a key
whose replica set the new ring changes: the replicas refuse the write placed with the
old epoch, n1 learns the new ring from them and writes again on it, so the node the key
gained holds it. With the fence planted away (``no-epoch-fence``) the replicas serve the
old-ring write and the gained node never sees it: the test that the fence matters.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from kvstore import config as config_mod
from kvstore.config import ClusterConfig
from kvstore.core.consistency import CallOptions
from kvstore.core.epochs import Learn, Learned, RingRecord
from kvstore.core.quorum import Outcome
from kvstore.core.ring import Replica, Ring
from kvstore.core.version import Record
from kvstore.harness.control import NodeFaults
from kvstore.node.fanout import Deadline
from kvstore.node.runtime import Node
from kvstore.sim import loop as sim_loop
from kvstore.sim.cluster import SimCluster

IDS = [f"n{i}" for i in range(1, 6)]


def _config() -> ClusterConfig:
    return config_mod.parse(
        {
            "cluster": {"name": "fence", "n": 3, "r": 2, "w": 2},
            "tls": "off",
            "nodes": [
                {"id": n, "address": f"sim:{i}", "data_dir": n} for i, n in enumerate(IDS, 1)
            ],
        },
        base=Path("/fence"),
    )


def _moving_key(old: RingRecord, new: RingRecord) -> tuple[bytes, str]:
    """A key n5 holds in ``old`` and n1 in neither ring (so n1's own copy never helps),
    and the node the new ring gives it instead of n5."""
    before, after = Ring(old.ids, old.vnodes), Ring(new.ids, new.vnodes)
    for i in range(10_000):
        key = f"k{i}".encode()
        was, now = before.primaries(key, 3), after.primaries(key, 3)
        if "n5" in was and "n1" not in was and "n1" not in now:
            (gained,) = set(now) - set(was)
            return key, gained
    raise AssertionError("no key moves")


async def _running(
    planted: tuple[str, ...] = (),
) -> tuple[SimCluster, Node, RingRecord, RingRecord]:
    """A settled 5-node cluster with ``planted`` on every node, its first node, the ring
    every node serves, and the next one (without n5), which no node has learnt yet."""
    cluster = SimCluster(_config(), random.Random(7))
    cluster.start()
    await asyncio.sleep(1.0)
    for node_id in IDS:
        await cluster.set_faults(node_id, NodeFaults(planted=planted))
    first = cluster.nodes["n1"]
    assert first is not None and first.epochs is not None
    old = first.epochs.chosen
    return cluster, first, old, RingRecord(old.epoch + 1, old.members[:4], old.n, old.vnodes)


def _write_behind(consistency: str, planted: tuple[str, ...]) -> dict[str, object]:
    seen: dict[str, object] = {}

    async def main() -> None:
        cluster, first, old, new = await _running(planted)
        nodes = {n: cluster.nodes[n] for n in IDS}
        for node_id in IDS[1:]:
            node = nodes[node_id]
            assert node is not None
            assert isinstance(await node.epoch_message(Learn(new)), Learned)
        assert first.epoch == old.epoch  # behind: nothing has told it yet
        key, gained = _moving_key(old, new)

        async def put(node: Node) -> object:
            return await node.put(key, b"v", CallOptions(consistency=consistency))

        await cluster.call("n1", put, 10.0)
        await asyncio.sleep(0.3)  # the write's third copy lands
        seen["epoch"] = first.epoch
        seen["fenced"] = first.counters["put.fenced"]
        seen["gained_holds"] = await cluster.read_local(gained, key) is not None
        seen["refused"] = sum(
            n.counters["replica.refused_epoch"] for n in nodes.values() if n is not None
        )

    sim_loop.run(main)
    return seen


@pytest.mark.parametrize("consistency", ["quorum", "linearizable"])
def test_a_coordinator_behind_writes_again_on_the_newer_ring(consistency: str) -> None:
    seen = _write_behind(consistency, ())
    assert seen["refused"], seen
    assert seen["fenced"], seen
    assert seen["epoch"] == 2, seen
    assert seen["gained_holds"] is True, seen


def test_without_the_fence_the_write_lands_on_the_old_ring_only() -> None:
    seen = _write_behind("quorum", ("no-epoch-fence",))
    assert not seen["refused"] and not seen["fenced"], seen
    assert seen["gained_holds"] is False, seen


def _own_copy_placed_behind(planted: tuple[str, ...]) -> dict[str, object]:
    """n1 learns a newer ring while an attempt it placed with the old one is still going
    (as during a linearizable write's query round), then sends that attempt's write and
    read to its own copy: the fence must refuse both, as a peer refuses them."""
    seen: dict[str, object] = {}

    async def main() -> None:
        cluster, first, old, new = await _running(planted)
        assert isinstance(await first.epoch_message(Learn(new)), Learned)
        assert first.epoch == new.epoch
        key = b"placed-behind"
        own = [Replica("n1", True)]
        record = Record(key, b"v", first.clock.now(first.physical_us()))

        deadline = Deadline(1000, first.time)
        deadline.epoch = old.epoch
        write = first._fan_out_write(own, record, 1, False, deadline)
        seen["write_decided"] = await write.decided
        seen["write_outcome"] = write.round.tally.outcome
        seen["write_refused"] = deadline.refused
        seen["landed"] = await cluster.read_local("n1", key) is not None

        deadline = Deadline(1000, first.time)
        deadline.epoch = old.epoch
        read = first._fan_out_read(own, key, 1, False, deadline)
        await read.decided
        seen["read_outcome"] = read.round.tally.outcome
        seen["read_refused"] = deadline.refused

    sim_loop.run(main)
    return seen


def test_a_coordinators_own_copy_refuses_an_attempt_placed_with_an_older_ring() -> None:
    seen = _own_copy_placed_behind(())
    assert seen["write_outcome"] is Outcome.FAILED, seen
    assert seen["write_refused"] == (2, "n1"), seen
    assert seen["landed"] is False, seen
    assert seen["read_outcome"] is Outcome.FAILED, seen
    assert seen["read_refused"] == (2, "n1"), seen


def test_without_the_fence_the_own_copy_serves_the_old_ring() -> None:
    seen = _own_copy_placed_behind(("no-epoch-fence",))
    assert seen["write_outcome"] is Outcome.REACHED, seen
    assert seen["landed"] is True, seen
    assert seen["read_refused"] is None, seen


def _async_repair_after_the_call_moved_on() -> dict[str, object]:
    """n1 reads a key with async read repair; one replica (s) answers an older version,
    so a repair to s is on its way when the call runs again on a newer ring (which moves
    the call's shared epoch on) and s learns that ring. The repair was placed with the
    old ring: s must refuse it, as it refuses every request placed with an older one."""
    seen: dict[str, object] = {}

    async def main() -> None:
        cluster, first, old, new = await _running()
        ring = Ring(old.ids, old.vnodes)
        key = next(
            k
            for i in range(10_000)
            if "n5" not in ring.primaries(k := f"r{i}".encode(), 3)
            and "n1" not in ring.primaries(k, 3)
        )
        stale, *others = ring.primaries(key, 3)
        await cluster.call("n1", lambda n: n.put(key, b"v1", CallOptions(w="all")), 10.0)
        newer = Record(key, b"v2", first.clock.now(first.physical_us()))
        for node_id in others:
            node = cluster.nodes[node_id]
            assert node is not None
            await node.apply_local(newer, None)

        opts, key_bytes, targets, _, epoch = first._prepare(
            "get", key, CallOptions(r="all", read_repair="async"), True
        )
        deadline = Deadline(1000, first.time)
        deadline.epoch = epoch
        await first._get_once(opts, key_bytes, targets, deadline, False)
        deadline.epoch = new.epoch  # what the call's next attempt does, on the new ring
        holder = cluster.nodes[stale]
        assert holder is not None
        assert isinstance(await holder.epoch_message(Learn(new)), Learned)
        await asyncio.sleep(0.5)
        seen["refused"] = holder.counters["replica.refused_epoch"]
        record = await cluster.read_local(stale, key)
        seen["stale_holds"] = None if record is None else record.value

    sim_loop.run(main)
    return seen


def test_an_async_read_repair_keeps_the_epoch_of_its_attempt() -> None:
    seen = _async_repair_after_the_call_moved_on()
    assert seen["refused"] == 1, seen
    assert seen["stale_holds"] == b"v1", seen
