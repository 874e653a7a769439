"""A node's sense of time, injected: real in production, virtual in the simulator.

Rules: ``monotonic()`` is seconds that never go back (deadlines, the failure detector,
heartbeat ages); ``wall_us()`` is the physical clock the hybrid logical clock reads
(microseconds since the epoch; it may be skewed, and may jump, as real clocks do).
Nothing in the node calls ``time`` directly, so the simulator owns every instant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_us(self) -> int: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_us(self) -> int:
        return time.time_ns() // 1000


SYSTEM_CLOCK = SystemClock()


async def on_thread(fn: Callable[..., T], *args: Any) -> T:
    """Production offload of CPU-heavy work (Merkle trees): a thread, off the loop."""
    return await asyncio.to_thread(fn, *args)


async def inline(fn: Callable[..., T], *args: Any) -> T:
    """The simulator's offload: run it now (threads would break determinism)."""
    return fn(*args)
