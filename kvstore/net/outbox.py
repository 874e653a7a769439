"""What one stream's writer sends: items queued by many tasks, sent in batches.

Rules and invariants:
- Everything queued when the writer wakes leaves together, after the loop turns that keep
  adding to it (``gather_turns``: at least one, at most ``MAX_TURNS``), so that the tasks
  woken together join one batch: per-message gRPC cost is what limits this system, so
  fewer, fuller messages win.
- A batch is cut so that its items' sizes stay under ``limit`` bytes (always at least one
  item), keeping every message under gRPC's size limit.
- ``stream`` runs the reading side (``pump``) beside the writer, ends once ``done()``
  holds with nothing queued, and never leaves the pump running behind it.
- ``room`` lets a pump wait while the writer is behind (the other end stopped reading),
  so a reader that never reads cannot make the outbox grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")

BATCH_LIMIT_BYTES = 1 << 20


# At most this many loop turns before a batch leaves (bench/README.md: 16 against 1
# gave fewer frames per call and more linearizable calls per second at 64 in flight,
# and no change at 4 in flight, where the first turn adds nothing).
MAX_TURNS = 16


async def gather_turns(count: Callable[[], int], turns: int = MAX_TURNS) -> None:
    """Let the loop run while it keeps adding to a batch: one turn, then one more each
    time the last turn added items (``count`` grew), at most ``turns`` in all.

    Work that wakes together rarely finishes in one turn (a frame's replies resolve
    futures whose callers run the next turn, and queue then), so one turn sends it in
    pieces; a turn that adds nothing means the rest is waiting on I/O, so the batch goes.
    """
    before = count()
    for _ in range(turns):
        await asyncio.sleep(0)
        now = count()
        if now == before:
            return
        before = now


def cut(items: list[T], size: Callable[[T], int], limit: int) -> tuple[list[T], list[T]]:
    """The longest head of ``items`` within ``limit`` bytes (at least one), and the rest;
    both are new lists."""
    total = 0
    for i, item in enumerate(items):
        total += size(item)
        if total > limit and i > 0:
            return items[:i], items[i:]
    return items[:], []


class Outbox(Generic[T]):
    def __init__(self, size: Callable[[T], int], limit: int = BATCH_LIMIT_BYTES) -> None:
        self._items: list[T] = []
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()  # the writer took a batch
        self._size = size
        self._limit = limit

    def put(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    @property
    def backlog(self) -> int:
        return len(self._items)

    async def room(self, max_items: int) -> None:
        """Wait until at most ``max_items`` are queued (a rare path: the peer is slow)."""
        while len(self._items) > max_items:
            self._taken.clear()
            await self._taken.wait()

    def wake(self) -> None:
        """Make the writer look at ``done()`` again."""
        self._ready.set()

    async def stream(
        self, pump: Coroutine[Any, Any, None], done: Callable[[], bool]
    ) -> AsyncIterator[list[T]]:
        pumping = asyncio.ensure_future(pump)
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                await gather_turns(lambda: len(self._items))  # every task ready now joins
                while self._items:
                    batch, self._items = cut(self._items, self._size, self._limit)
                    self._taken.set()
                    yield batch
                if done() and not self._items:
                    break
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
