"""The client's per-call options: checked before anything is sent, and kept for reuse
only once checked, by value and type (the memo must never let a bad call through)."""

from __future__ import annotations

import pytest

from kvstore import Client, InvalidArgument
from kvstore.client import aio


def _client() -> Client:
    return Client(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], node_ids=["a", "b", "c"], n=3)


async def test_a_kept_option_is_the_one_its_arguments_make() -> None:
    client = _client()
    one = client._options(1, None, None, None, None, None, False)
    assert client._options(1, None, None, None, None, None, False) is one
    assert (one.r, one.consistency, one.timeout_ms) == (1, "", 0)
    other = client._options(None, None, "linearizable", None, None, 2.5, False)
    assert (other.r, other.consistency, other.timeout_ms) == (0, "linearizable", 2500)
    assert other == client._checked_options((None, None, "linearizable", None, None, 2.5, False))


@pytest.mark.parametrize(
    "bad",
    [
        (True, None, None, None, None, None, False),  # a bool is not the level 1
        (4, None, None, None, None, None, False),  # R > N
        ([1], None, None, None, None, None, False),  # unhashable
        (None, None, None, None, None, float("nan"), False),
        (None, None, "most", None, None, None, False),
    ],
)
async def test_a_bad_call_is_refused_even_after_a_good_one_was_kept(
    bad: tuple[object, ...],
) -> None:
    client = _client()
    for good in (
        (1, None, None, None, None, None, False),
        (None, None, None, None, None, 1, False),
    ):
        client._options(*good)  # kept: (int, 1), (int, 1) for the timeout
    with pytest.raises(InvalidArgument):
        client._options(*bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        client._options(*bad)  # type: ignore[arg-type]  # and not kept either


async def test_the_memos_stay_bounded() -> None:
    client = _client()
    for i in range(aio.MEMO_LIMIT + 10):
        client._options(None, None, None, None, None, 1 + i / 1000, False)
        client._coordinators(b"key-%d" % i)
    assert len(client._options_memo) <= aio.MEMO_LIMIT
    assert len(client._walks) <= aio.MEMO_LIMIT
    assert client._coordinators(b"key-1") == list(client._ring.walk(b"key-1"))  # type: ignore[union-attr]
