"""What a node needs from its network: one link per peer, requests in, futures out.

Rules every transport keeps (``tests/net/test_transport_contract.py`` checks them for
gRPC and for the simulated network):
- ``request`` returns a future that always completes: with the peer's reply payload,
  with ``PeerError`` when the link breaks or the peer refuses, or at its own deadline.
- ``served``, when given, is called with the replica's service time (seconds, on its
  own clock) just before the future gets a successful reply that carries one.
- ``PeerError.sent`` is False only when the message certainly never reached the peer,
  or reached it and was refused unserved (``StaleEpoch``: the peer serves a newer ring
  epoch); the coordinator's definite/indefinite taxonomy rests on it.
- At most ``max_pending`` requests wait for an answer; more fail at once, not sent.
- The other end serves requests with ``Node.handle_frame`` (messages in, replies out),
  so a transport moves frames and never interprets them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from kvstore.net import replica_codec

# Told that a peer answered, with the newest ring epoch its answer named (None: none).
Heard = Callable[[str, int | None], None]


class PeerError(Exception):
    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class StaleEpoch(PeerError):
    """The peer refused the request unserved: it serves ring epoch ``epoch``, newer than
    the one the request was placed with (``replica_codec``, status 2)."""

    def __init__(self, message: str, *, peer: str, epoch: int) -> None:
        super().__init__(message, sent=False)
        self.peer = peer
        self.epoch = epoch


def reply_error(peer: str, status: object, result: object, epoch: int | None) -> PeerError:
    """The error a request gets for a reply that is not OK (both transports use this)."""
    if status == replica_codec.STALE and epoch is not None:
        return StaleEpoch(f"{peer}: {result}", peer=peer, epoch=epoch)
    return PeerError(f"{peer}: {result}", sent=True)


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
