"""The lying disk (a fault wrapper): acknowledged, visible, and gone with the process."""

from __future__ import annotations

from kvstore.core.version import Record, Timestamp
from kvstore.storage.lying import LyingDisk
from kvstore.storage.memory import MemoryEngine


def rec(key: bytes, value: bytes | None, wall: int) -> Record:
    return Record(key, value, Timestamp(wall, 0, "n1"))


async def test_held_writes_are_acknowledged_and_read_but_never_reach_the_engine() -> None:
    inner = MemoryEngine()
    lying = [True]
    disk = LyingDisk(inner, lambda: lying[0])
    await inner.apply(rec(b"a", b"old", 1))
    assert await disk.apply_many([rec(b"a", b"new", 2), rec(b"b", b"x", 3)]) == [True, True]
    assert await disk.apply(rec(b"a", b"older", 0)) is False  # last-writer-wins still
    assert (await disk.get(b"a")) == rec(b"a", b"new", 2)
    assert [r.key async for r in disk.scan()] == [b"a", b"b"]
    assert await disk.count() == 2
    assert await inner.get(b"a") == rec(b"a", b"old", 1)
    assert await inner.get(b"b") is None
    # a crash: the process (and its wrapper) is gone; a new one sees only the engine
    reborn = LyingDisk(inner, lambda: False)
    assert await reborn.get(b"a") == rec(b"a", b"old", 1)
    assert await reborn.get(b"b") is None
    assert disk.held_writes == 2


async def test_stop_lying_writes_what_was_held() -> None:
    inner = MemoryEngine()
    lying = [True]
    disk = LyingDisk(inner, lambda: lying[0])
    await disk.apply(rec(b"k", b"v", 5))
    lying[0] = False
    await disk.stop_lying()
    assert await inner.get(b"k") == rec(b"k", b"v", 5)
    await disk.apply(rec(b"k", b"w", 6))
    assert await inner.get(b"k") == rec(b"k", b"w", 6)


async def test_hints_are_not_part_of_the_lie() -> None:
    inner = MemoryEngine()
    disk = LyingDisk(inner, lambda: True)
    await disk.add_hint("n2", rec(b"k", b"v", 1), 10)
    assert await inner.hint_counts() == {"n2": 1}
