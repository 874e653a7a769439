"""The stream writer's batching: what leaves together, cut to the size limit, and when
the stream ends."""

from __future__ import annotations

import asyncio

from kvstore.net.outbox import Outbox, cut, gather_turns


def test_cut_keeps_each_batch_under_the_limit_but_never_empty() -> None:
    items = [b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 200]
    head, rest = cut(items, len, 100)
    assert head == items[:2] and rest == items[2:]
    head, rest = cut(rest, len, 100)
    assert head == [items[2]] and rest == [items[3]]
    head, rest = cut(rest, len, 100)  # one item over the limit still leaves, alone
    assert head == [items[3]] and rest == []
    everything = [b"x"] * 3
    head, rest = cut(everything, len, 100)
    assert head == everything and head is not everything  # a new list


async def test_items_queued_in_one_turn_leave_together_and_the_stream_ends_when_done() -> None:
    outbox: Outbox[int] = Outbox(lambda _: 1)
    done = False

    async def pump() -> None:
        nonlocal done
        for i in range(5):
            outbox.put(i)  # one turn: all five
        await asyncio.sleep(0.01)
        outbox.put(5)
        await asyncio.sleep(0.01)
        done = True
        outbox.wake()

    batches = [batch async for batch in outbox.stream(pump(), lambda: done)]
    assert batches == [[0, 1, 2, 3, 4], [5]]


async def test_a_batch_waits_for_the_turns_that_keep_adding_to_it_and_no_longer() -> None:
    # A chain of tasks, each queueing one item and waking the next a turn later: the
    # way a frame's replies wake callers that then queue their next requests.
    outbox: Outbox[int] = Outbox(lambda _: 1)
    done = False

    def chain(i: int, left: int) -> None:
        outbox.put(i)
        if left:
            asyncio.get_running_loop().call_soon(chain, i + 1, left - 1)

    async def pump() -> None:
        nonlocal done
        chain(0, 5)  # six items, one per turn
        await asyncio.sleep(0.05)
        chain(10, 40)  # more turns than a batch waits for
        await asyncio.sleep(0.05)
        done = True
        outbox.wake()

    batches = [batch async for batch in outbox.stream(pump(), lambda: done)]
    assert batches[0] == [0, 1, 2, 3, 4, 5]  # one batch, not one per turn
    rest = [item for batch in batches[1:] for item in batch]
    assert rest == list(range(10, 51))
    assert 1 < len(batches[1:]) < 41  # cut after MAX_TURNS, still batched


async def test_gather_turns_returns_after_one_turn_that_adds_nothing() -> None:
    turns = 0

    def count() -> int:
        nonlocal turns
        turns += 1
        return 0

    await gather_turns(count)
    assert turns == 2  # before, and after the one turn
    grown = iter(range(100))
    await gather_turns(lambda: next(grown), 3)
    assert next(grown) == 4  # before, then three turns, each adding: the cap
