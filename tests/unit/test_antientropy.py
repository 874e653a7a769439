"""The anti-entropy exchange between two in-process replicas (no network, real msgpack).

Every message goes through a msgpack round trip, as it would on a replica stream, so the
codec's view of the payloads (bytes stay bytes, lists stay lists) is the one tested.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from kvstore.core.ring import Ring
from kvstore.core.version import Record, Timestamp
from kvstore.node.antientropy import Call, Replica
from kvstore.storage import MemoryEngine

NODES = ["a", "b", "c"]


def wire(peer: Replica) -> Call:
    ops = peer.ops()

    async def call(op: str, args: list[Any]) -> Any:
        raw = msgpack.unpackb(msgpack.packb(args, use_bin_type=True), raw=False)
        reply = await ops[op](raw)
        return msgpack.unpackb(msgpack.packb(reply, use_bin_type=True), raw=False)

    return call


async def contents(engine: MemoryEngine) -> dict[bytes, Record]:
    return {r.key: r async for r in engine.scan()}


def rec(key: str, value: str | None, wall: int, node: str = "a") -> Record:
    return Record(key.encode(), None if value is None else value.encode(), Timestamp(wall, 0, node))


async def test_exchange_converges_both_ways_with_tombstones() -> None:
    # n=3 of 3 nodes: a and b replicate every key, so every key is in the exchange
    ring = Ring(NODES, 8)
    ea, eb = MemoryEngine(), MemoryEngine()
    a = Replica("a", ea, ring, 3)
    b = Replica("b", eb, ring, 3)
    rng = random.Random(7)
    base = [rec(f"k{i}", f"v{i}", 10) for i in range(2000)]
    await ea.apply_many(base)
    await eb.apply_many(base)
    only_a = [rec(f"a{i}", "x", 11) for i in range(20)]
    only_b = [rec(f"b{i}", "y", 11) for i in range(20)]
    newer_a = [rec(f"k{i}", "new-a", 12) for i in rng.sample(range(2000), 15)]
    deletes_b = [rec(f"k{i}", None, 13, "b") for i in rng.sample(range(2000), 15)]
    await ea.apply_many(only_a + newer_a)
    await eb.apply_many(only_b + deletes_b)
    expected = await contents(ea)
    for r in only_b + deletes_b:
        if r.key not in expected or r.ts > expected[r.key].ts:
            expected[r.key] = r

    result = await a.exchange("b", wire(b), (await a.shared_entries(["b"], 0))["b"], 0)

    assert await contents(ea) == expected
    assert await contents(eb) == expected
    assert result.keys_repaired == len(only_a) + len(only_b) + len(newer_a) + len(deletes_b) - len(
        {r.key for r in newer_a} & {r.key for r in deletes_b}
    )
    assert a.counters["ae.exchanges"] == 1
    assert a.counters["ae.keys_repaired"] + b.counters["ae.keys_repaired"] == result.keys_repaired
    # a second round finds nothing: one root compared, nothing moved
    again = await a.exchange("b", wire(b), (await a.shared_entries(["b"], 0))["b"], 0)
    assert again.keys_repaired == 0 and again.leaves_differing == 0
    assert again.hashes_compared == 1


async def test_only_keys_both_replicate_are_exchanged() -> None:
    ring = Ring(NODES, 8)
    ea, eb = MemoryEngine(), MemoryEngine()
    a = Replica("a", ea, ring, 2)
    b = Replica("b", eb, ring, 2)
    records = [rec(f"key-{i}", "v", 5) for i in range(300)]
    await ea.apply_many(records)  # a holds every key, including ones b does not replicate
    await a.exchange("b", wire(b), (await a.shared_entries(["b"], 0))["b"], 0)
    got = set(await contents(eb))
    shared = {r.key for r in records if {"a", "b"} <= set(ring.primaries(r.key, 2))}
    assert got == shared and 0 < len(shared) < len(records)


async def test_tombstones_past_the_cutoff_are_not_copied() -> None:
    ring = Ring(NODES, 8)
    ea, eb = MemoryEngine(), MemoryEngine()
    a = Replica("a", ea, ring, 3)
    b = Replica("b", eb, ring, 3)
    await ea.apply_many([rec("old-delete", None, 5), rec("new-delete", None, 50)])
    await a.exchange("b", wire(b), (await a.shared_entries(["b"], 10))["b"], 10)
    assert set(await contents(eb)) == {b"new-delete"}


async def test_a_session_the_peer_dropped_is_an_error() -> None:
    ring = Ring(NODES, 8)
    b = Replica("b", MemoryEngine(), ring, 3)
    with pytest.raises(LookupError):
        await b.ops()["ae.hashes"](["nope", 0, [0]])
