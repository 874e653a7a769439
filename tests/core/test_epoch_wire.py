"""Paxos messages as plain data: every kind round-trips, and bad input is refused with
``WireError`` naming where and what (it comes from operators and peers)."""

from __future__ import annotations

import msgpack
import pytest

from kvstore.core.epoch_wire import WireError, decode_message, encode_message
from kvstore.core.epochs import (
    READ_NEW,
    Accept,
    Accepted,
    Ballot,
    Behind,
    Chosen,
    Learn,
    Learned,
    Nack,
    Prepare,
    Promise,
    RingRecord,
)

FIVE = tuple((f"n{i}", f"127.0.0.1:{7000 + i}") for i in range(1, 6))
ONE = RingRecord(1, FIVE, 3, 16)
MOVING = RingRecord(3, FIVE, 3, 16, (*FIVE[1:], ("n6", "127.0.0.1:7006")), READ_NEW)
B = Ballot(4, "op-1")


@pytest.mark.parametrize(
    "message",
    [
        Prepare(2, B),
        Accept(3, B, MOVING),
        Learn(ONE),
        Promise(2, B, None),
        Promise(3, B, (Ballot(1, "x"), MOVING)),
        Accepted(2, B),
        Nack(2, B),
        Chosen(MOVING),
        Behind(0),
        Learned(3),
    ],
)
def test_every_message_round_trips_through_msgpack(message: object) -> None:
    raw = msgpack.unpackb(msgpack.packb(encode_message(message)), raw=False)  # type: ignore[arg-type]
    assert decode_message(raw, "here") == message


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("prepare", "not a Paxos message"),
        (["elect", 2], "not a Paxos message"),
        (["prepare", 2], "has 3 fields"),
        (["prepare", -1, [1, "a"]], "an epoch is a non-negative integer"),
        (["prepare", 2, [1]], "a ballot is"),
        (["learn", "ring"], "a ring is a map"),
        (["learn", {"epoch": 1}], "missing 'members'"),
        (["promise", 2, [1, "a"], [1]], "a vote is"),
        (["chosen", {**encode_message(Chosen(ONE))[1], "phase": "soon"}], "phase 'soon'"),
    ],
)
def test_bad_messages_are_refused_naming_the_problem(raw: object, problem: str) -> None:
    with pytest.raises(WireError, match=problem) as caught:
        decode_message(raw, "the peer")
    assert "the peer" in str(caught.value)
