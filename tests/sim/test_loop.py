"""The virtual loop: time jumps, order is (deadline, sequence), pause parks, kill ends,
deadlocks are named, threads are refused."""

from __future__ import annotations

import asyncio

import pytest

from kvstore.sim import loop as sim_loop
from kvstore.sim.loop import EPOCH_S, SimDeadlock, VirtualLoop, in_process


def test_time_jumps_to_the_next_timer_and_sleeps_cost_no_wall_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - t0

    assert sim_loop.run(main) == 3600


def test_timers_fire_by_deadline_then_by_the_order_they_were_set() -> None:
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, order.append, "b@0.2")
        loop.call_later(0.1, order.append, "a@0.1")
        for name in ("c", "d", "e"):  # same deadline: first set, first fired
            loop.call_later(0.3, order.append, f"{name}@0.3")
        await asyncio.sleep(1)

    sim_loop.run(main)
    assert order == ["a@0.1", "b@0.2", "c@0.3", "d@0.3", "e@0.3"]


def test_a_cancelled_timer_never_fires() -> None:
    fired: list[int] = []

    async def main() -> None:
        handle = asyncio.get_running_loop().call_later(0.1, fired.append, 1)
        handle.cancel()
        await asyncio.sleep(1)

    sim_loop.run(main)
    assert fired == []


def test_a_deadlock_is_reported_with_the_waiting_tasks() -> None:
    async def main() -> None:
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(never, None)

    with pytest.raises(SimDeadlock, match="nothing ready and no timer set"):
        sim_loop.run(main)


def test_a_paused_process_runs_late_and_in_order_on_resume() -> None:
    seen: list[tuple[str, float]] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await asyncio.sleep(1)
            seen.append(("tick", loop.time() - EPOCH_S))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualLoop)
        task = in_process("p1", loop.create_task, ticker())
        await asyncio.sleep(1.5)  # one tick done
        loop.pause("p1")
        await asyncio.sleep(5)  # its second tick comes due at 2.0 but must wait
        assert len(seen) == 1
        loop.resume("p1")
        await task

    sim_loop.run(main)
    assert [t for _, t in seen] == [1.0, 6.5, 7.5]


def test_a_killed_process_never_runs_again_and_others_carry_on() -> None:
    seen: list[str] = []

    async def forever(name: str) -> None:
        while True:
            await asyncio.sleep(1)
            seen.append(name)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualLoop)
        in_process("victim", loop.create_task, forever("victim"))
        in_process("survivor", loop.create_task, forever("survivor"))
        await asyncio.sleep(2.5)
        loop.kill("victim")
        await asyncio.sleep(3)

    sim_loop.run(main)
    assert seen.count("victim") == 2
    assert seen.count("survivor") == 5


def test_threads_are_refused() -> None:
    async def main() -> None:
        await asyncio.to_thread(print, "from a thread")

    with pytest.raises(RuntimeError, match="runs no threads"):
        sim_loop.run(main)
