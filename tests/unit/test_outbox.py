"""The stream writer's batching: what leaves together, cut to the size limit, and when
the stream ends."""

from __future__ import annotations

import asyncio

from kvstore.net.outbox import Outbox, cut


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
