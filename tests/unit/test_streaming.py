"""Range streaming's two ends against bad peer input: the source refuses bad requests,
the target refuses chunks that are not what it asked for (a fake link, one layer)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kvstore.core.peer_input import PeerInputError, PeerLimits
from kvstore.core.ring import Ring, token
from kvstore.core.version import Record, Timestamp
from kvstore.node.streaming import drop_unowned, pull, scan_chunk
from kvstore.storage.memory import MemoryEngine

LIMITS = PeerLimits(1024, 1 << 20, frozenset({"n1"}), 1 << 62)
TOP = (1 << 64) - 1


def _record(key: bytes) -> list[Any]:
    return [key, b"v", 1_800_000_000_000_000, 0, "n1"]


class ChunkLink:
    """Answers each request with the next canned chunk."""

    def __init__(self, chunks: list[list[Any]]) -> None:
        self.chunks = chunks

    def request(self, body: list[Any], timeout_s: float, served: Any = None) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(self.chunks.pop(0))
        return future


async def _pull(chunks: list[list[Any]], ranges: list[tuple[int, int]]) -> Any:
    stored: list[Record] = []

    async def store(records: list[Record]) -> int:
        stored.extend(records)
        return len(records)

    return await pull(
        ChunkLink(chunks),  # type: ignore[arg-type]
        ranges,
        None,
        limits=LIMITS,
        store=store,
        observe=lambda _ts: None,
        rate_keys_s=0,
        budget_s=5,
        sleep=asyncio.sleep,
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([[[5, 1]], None, 10], "is not 0 <= first <= last"),
        ([[[0, 10], [5, 20]], None, 10], "overlap"),
        ([[[0, TOP + 1]], None, 10], "last"),
        ([[[0, 10]], b"", 10], "key must be non-empty"),
        ([[[0, 10]], None], "stream.scan"),
        (["all", None, 10], "ranges must be a list"),
        ([[[0, 10]], None, 0], "limit must be an integer in 1..2000"),
        ([[[0, 10]], None, 10**9], "limit"),
    ],
)
async def test_the_source_refuses_bad_requests(args: list[Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        await scan_chunk(MemoryEngine(), args, LIMITS)


async def test_the_target_refuses_keys_outside_what_it_asked_for() -> None:
    key = b"k"
    t = token(key)
    elsewhere = [(t + 1, TOP)] if t < TOP else [(0, t - 1)]
    with pytest.raises(PeerInputError, match="outside the ranges"):
        await _pull([[[_record(key)], None]], elsewhere)


async def test_the_target_refuses_a_cursor_that_goes_backwards_and_bad_records() -> None:
    with pytest.raises(PeerInputError, match="went backwards"):
        await _pull([[[], b"m"], [[], b"c"]], [(0, TOP)])
    with pytest.raises(PeerInputError, match="node"):
        await _pull([[[[b"k", b"v", 1, 0, "nobody"]], None]], [(0, TOP)])


async def test_a_whole_store_streams_in_key_order_chunks() -> None:
    engine = MemoryEngine()
    await engine.apply_many(
        [Record(f"k{i}".encode(), None if i % 7 == 0 else b"v", Timestamp(1, i, "n1"))
         for i in range(50)]
    )  # fmt: skip
    first = await scan_chunk(engine, [[[0, TOP]], None, 2000], LIMITS)
    assert first[1] is None and len(first[0]) == 50
    got = await _pull([first], [(0, TOP)])
    assert (got.keys, got.tombstones, got.next) == (50, 8, None)


class EngineLink:
    """A source engine behind a link: each request answered by ``scan_chunk``."""

    def __init__(self, engine: MemoryEngine) -> None:
        self.engine = engine
        self.asked: list[int] = []

    async def _answer(self, body: list[Any]) -> Any:
        self.asked.append(body[3])
        return await scan_chunk(self.engine, body[1:], LIMITS)

    def request(self, body: list[Any], timeout_s: float, served: Any = None) -> Any:
        return asyncio.ensure_future(self._answer(body))


async def test_a_throttled_stream_takes_at_least_keys_over_rate_in_small_chunks() -> None:
    engine = MemoryEngine()
    await engine.apply_many(
        [Record(f"k{i:03}".encode(), b"v", Timestamp(1, i, "n1")) for i in range(95)]
    )
    link = EngineLink(engine)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def store(records: list[Record]) -> int:
        return len(records)

    got = await pull(
        link,  # type: ignore[arg-type]
        [(0, TOP)],
        None,
        limits=LIMITS,
        store=store,
        observe=lambda _ts: None,
        rate_keys_s=100,
        budget_s=5,
        sleep=sleep,
    )
    assert (got.keys, got.next) == (95, None)
    assert set(link.asked) == {10}  # a tenth of a second's worth per chunk
    assert sum(slept) == pytest.approx(0.95)  # the last chunk is waited for too


async def test_drop_unowned_keeps_exactly_what_the_ring_places_here() -> None:
    engine = MemoryEngine()
    records = [Record(f"k{i:03}".encode(), b"v", Timestamp(1, i, "n1")) for i in range(300)]
    await engine.apply_many(records)
    ring = Ring(["n1", "n2", "n3", "n4"], 8)
    got = await drop_unowned(engine, "n1", ring, 2, lambda: True, batch=7)
    owned = [r for r in records if "n1" in ring.primaries(r.key, 2)]
    assert 0 < len(owned) < 300
    assert (got.scanned, got.dropped) == (300, 300 - len(owned))
    assert [r async for r in engine.scan()] == owned


async def test_drop_unowned_stops_when_the_ring_changes() -> None:
    engine = MemoryEngine()
    await engine.apply_many(
        [Record(f"k{i:03}".encode(), b"v", Timestamp(1, i, "n1")) for i in range(100)]
    )
    with pytest.raises(RuntimeError, match="ring changed"):
        await drop_unowned(engine, "n9", Ring(["n1", "n2"], 4), 1, lambda: False, batch=10)
    assert await engine.count() == 100  # nothing dropped under a ring that moved
