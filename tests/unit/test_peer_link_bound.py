"""A peer link holds at most ``max_pending`` unanswered requests: beyond that a request
fails at once as not sent (definite), so a silent peer cannot grow a node's memory."""

from __future__ import annotations

import asyncio

import pytest

from kvstore.net.faults import FaultRules
from kvstore.net.peer import PeerError, PeerLink


async def test_requests_beyond_the_bound_fail_at_once_not_sent() -> None:
    # an isolated peer answers nothing: every request waits for its deadline
    link = PeerLink("n2", "127.0.0.1:9", faults=FaultRules(isolated=frozenset({"n2"})),
                    max_pending=8)  # fmt: skip
    try:
        waiting = [link.request(["p", "n1"], 30.0) for _ in range(8)]
        refused = [link.request(["p", "n1"], 30.0) for _ in range(5)]
        for future in refused:
            assert future.done()
            error = future.exception()
            assert isinstance(error, PeerError) and not error.sent
            assert "max_peer_pending" in str(error)
        assert not any(f.done() for f in waiting)
        assert link.refused_full == 5
    finally:
        await link.close()
    for future in waiting:  # closing fails what was still waiting
        with pytest.raises(PeerError):
            await asyncio.wait_for(future, 1)
