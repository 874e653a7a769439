"""The anti-entropy exchange between two in-process replicas (no network, real msgpack).

Every message goes through a msgpack round trip, as it would on a replica stream, so the
codec's view of the payloads (bytes stay bytes, lists stay lists) is the one tested.
Each exchange test runs in three modes: ``full`` (trees built from a scan, entries given),
``digest`` (trees summed from both engines' digest indexes) and ``mixed`` (the peer has
no index, so the initiator falls back to a scan): all must repair alike.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from kvstore.core.peer_input import PeerInputError
from kvstore.core.ring import Ring
from kvstore.core.version import Record, Timestamp
from kvstore.node.ae_wire import Call, PeerRound
from kvstore.node.antientropy import Replica
from kvstore.storage import MemoryEngine

NODES = ["a", "b", "c"]
MODES = ["full", "digest", "mixed"]


def engines(mode: str) -> tuple[MemoryEngine, MemoryEngine]:
    if mode == "full":
        return MemoryEngine(digest_depth=None), MemoryEngine(digest_depth=None)
    if mode == "mixed":
        return MemoryEngine(), MemoryEngine(digest_depth=None)
    return MemoryEngine(digest_depth=12), MemoryEngine(digest_depth=12)


async def exchange(a: Replica, b: Replica, cutoff: int, mode: str) -> PeerRound:
    if mode == "full":
        return await a.exchange(
            b.id, wire(b), (await a.shared_entries([b.id], cutoff))[b.id], cutoff
        )
    result = await a.exchange(b.id, wire(b), None, cutoff)
    assert result.digests is (mode == "digest")
    return result


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


@pytest.mark.parametrize("mode", MODES)
async def test_exchange_converges_both_ways_with_tombstones(mode: str) -> None:
    # n=3 of 3 nodes: a and b replicate every key, so every key is in the exchange
    ring = Ring(NODES, 8)
    ea, eb = engines(mode)
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

    result = await exchange(a, b, 0, mode)

    assert await contents(ea) == expected
    assert await contents(eb) == expected
    assert result.keys_repaired == len(only_a) + len(only_b) + len(newer_a) + len(deletes_b) - len(
        {r.key for r in newer_a} & {r.key for r in deletes_b}
    )
    assert a.counters["ae.exchanges"] == 1
    assert a.counters["ae.keys_repaired"] + b.counters["ae.keys_repaired"] == result.keys_repaired
    # a second round finds nothing: one root compared, nothing moved
    again = await exchange(a, b, 0, mode)
    assert again.keys_repaired == 0 and again.leaves_differing == 0
    assert again.hashes_compared == 1
    # open (with the root) and close; the mixed mode first hears the peer has no index
    assert again.round_trips == (3 if mode == "mixed" else 2)


@pytest.mark.parametrize("mode", MODES)
async def test_only_keys_both_replicate_are_exchanged(mode: str) -> None:
    ring = Ring(NODES, 8)
    ea, eb = engines(mode)
    a = Replica("a", ea, ring, 2)
    b = Replica("b", eb, ring, 2)
    records = [rec(f"key-{i}", "v", 5) for i in range(300)]
    await ea.apply_many(records)  # a holds every key, including ones b does not replicate
    await exchange(a, b, 0, mode)
    got = set(await contents(eb))
    shared = {r.key for r in records if {"a", "b"} <= set(ring.primaries(r.key, 2))}
    assert got == shared and 0 < len(shared) < len(records)


@pytest.mark.parametrize("mode", MODES)
async def test_tombstones_past_the_cutoff_are_not_copied(mode: str) -> None:
    ring = Ring(NODES, 8)
    ea, eb = engines(mode)
    a = Replica("a", ea, ring, 3)
    b = Replica("b", eb, ring, 3)
    await ea.apply_many([rec("old-delete", None, 5), rec("new-delete", None, 50)])
    await exchange(a, b, 10, mode)
    assert set(await contents(eb)) == {b"new-delete"}


async def test_digest_sessions_repair_what_full_sessions_repair_on_a_real_ring() -> None:
    # 5 nodes, 64 vnodes, N = 3: a pair shares some ranges only, whose edges cut buckets,
    # so the boundary buckets' sums are exercised. Two identical starting states, one
    # repaired by a full session and one by a digest session, must end alike.
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    ring = Ring(nodes, 64)
    rng = random.Random(11)
    base = [rec(f"key-{i}", f"v{i}", 10, "n3") for i in range(3000)]
    drift_a = [rec(f"key-{i}", "a", 20, "n1") for i in rng.sample(range(3000), 60)]
    drift_b = [rec(f"key-{i}", None, 21, "n2") for i in rng.sample(range(3000), 60)]
    ends = []
    for mode in ("full", "digest"):
        ea, eb = engines(mode)
        await ea.apply_many(base[:2900] + drift_a)
        await eb.apply_many(base[100:] + drift_b)
        a, b = Replica("n1", ea, ring, 3), Replica("n2", eb, ring, 3)
        result = await exchange(a, b, 0, mode)
        assert result.keys_repaired > 0
        ends.append((await contents(ea), await contents(eb), result.keys_repaired))
        again = await exchange(a, b, 0, mode)
        assert again.keys_repaired == 0 and again.round_trips == 2
    assert ends[0] == ends[1]


async def test_digest_rounds_cost_what_differs() -> None:
    # In sync: the root decides, 2 messages. One key apart: one leaf's entries travel.
    ring = Ring(NODES, 8)
    ea, eb = MemoryEngine(), MemoryEngine()
    a, b = Replica("a", ea, ring, 3), Replica("b", eb, ring, 3)
    base = [rec(f"k{i}", "v", 10) for i in range(5000)]
    await ea.apply_many(base)
    await eb.apply_many(base)
    same = await exchange(a, b, 0, "digest")
    assert (same.round_trips, same.leaves_differing, same.bytes_received < 200) == (2, 0, True)
    await eb.apply(rec("k7", "newer", 11))
    one = await exchange(a, b, 0, "digest")
    assert one.leaves_differing == 1 and one.keys_pulled == 1
    assert one.bytes_received < 2000  # a leaf's entries (a handful) and one record


async def test_a_session_the_peer_dropped_is_an_error() -> None:
    ring = Ring(NODES, 8)
    b = Replica("b", MemoryEngine(), ring, 3)
    with pytest.raises(LookupError):
        await b.ops()["ae.hashes"](["nope", 0, [0]])


async def test_ae_open_refuses_a_bad_digests_flag_and_a_depth_beyond_the_index() -> None:
    ring = Ring(NODES, 8)
    b = Replica("b", MemoryEngine(digest_depth=6), ring, 3)
    ops = b.ops()
    for bad in (
        ["s1", "a", 4, 0, "yes"],  # the flag is a boolean, not a string
        ["s1", "a", 4, 0, 1],  # nor an int
        ["s1", "a", 4, 0, True, "extra"],  # 4 or 5 fields
        ["s1", "a", 4],
    ):
        with pytest.raises(PeerInputError):
            await ops["ae.open"](bad)
    # deeper than this replica's index: no session, and the initiator is told to scan
    assert await ops["ae.open"](["s2", "a", 7, 0, True]) == [b"", 0, False]
    with pytest.raises(LookupError):
        await ops["ae.hashes"](["s2", 0, [0]])
    root, _count, digests = await ops["ae.open"](["s3", "a", 6, 0, True])
    assert digests is True and len(root) == 16
    with pytest.raises(PeerInputError):  # a leaf index outside a depth-6 tree
        await ops["ae.leaves"](["s3", [64]])
