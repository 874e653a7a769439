"""A peer's reply is read in one place (``replica_codec.reply_fields``) by both links."""

from __future__ import annotations

from typing import Any

import pytest

from kvstore.net import replica_codec


def test_a_reply_with_and_without_its_service_time_and_epoch() -> None:
    assert replica_codec.reply_fields([7, 0, True, 1500, 3]) == (7, 0, True, 0.0015, 3)
    assert replica_codec.reply_fields([7, 1, "no", 0, 0]) == (7, 1, "no", 0.0, 0)
    # older nodes send four or three fields: the reply counts, its epoch or timing unknown
    assert replica_codec.reply_fields([7, 0, True, 1500]) == (7, 0, True, 0.0015, None)
    assert replica_codec.reply_fields([7, 0, None]) == (7, 0, None, None, None)


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "x",
        [],
        [1, 0],
        [1, 0, None, 5, 6, 7],
        [1, 0, None, 5, -1],
        [1, 0, None, 5, "2"],
        [1, 0, None, 5, True],
        ["1", 0, None],
        [1.0, 0, None],
        [True, 0, None],
        [1, 0, None, -1],
        [1, 0, None, 1 << 63],
        [1, 0, None, 2.5],
        [1, 0, None, True],
        [1, 0, None, "5"],
    ],
)
def test_anything_else_is_not_a_reply(reply: Any) -> None:
    assert replica_codec.reply_fields(reply) is None
