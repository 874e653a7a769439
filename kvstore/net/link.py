"""What a node needs from its network: one link per peer, requests in, futures out.

Rules every transport keeps (``tests/net/test_transport_contract.py`` checks them for
gRPC and for the simulated network):
- ``request`` returns a future that always completes: with the peer's reply payload,
  with ``PeerError`` when the link breaks or the peer refuses, or at its own deadline.
- ``served``, when given, is called with the replica's service time (seconds, on its
  own clock) just before the future gets a successful reply that carries one.
- ``PeerError.sent`` is False only when the message certainly never reached the peer;
  the coordinator's definite/indefinite taxonomy rests on it.
- At most ``max_pending`` requests wait for an answer; more fail at once, not sent.
- The other end serves requests with ``Node.handle_frame`` (messages in, replies out),
  so a transport moves frames and never interprets them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

# Told that a peer answered, with the newest ring epoch its answer named (None: none).
Heard = Callable[[str, int | None], None]


class PeerError(Exception):
    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class Link(Protocol):
    frames_sent: int
    messages_sent: int
    refused_full: int

    @property
    def pending_count(self) -> int: ...

    def request(
        self, body: list[Any], timeout_s: float, served: Callable[[float], None] | None = None
    ) -> asyncio.Future[Any]: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    def link(self, peer_id: str, address: str, on_heard: Heard) -> Link:
        """This node's link to ``peer_id``; ``on_heard(peer_id, epoch)`` is called whenever
        it answers, with the newest ring epoch the answer names (None: it names none)."""
        ...
