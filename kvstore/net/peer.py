"""A node's link to one peer: one long-lived bidirectional stream, batched messages.

Rules and invariants:
- Every request gets a future that always completes: with the peer's reply, with
  ``PeerError`` when the stream breaks, or on its own deadline. Nothing waits forever,
  even on a paused (SIGSTOP) peer.
- ``PeerError.sent`` is False only when the message certainly never left this node (the
  channel could not be made ready, or the message was still queued); callers rely on
  that for the definite/indefinite error taxonomy.
- All messages queued while the sender task sleeps, and in the loop turns that keep
  adding to them (``outbox.gather_turns``), go out as one frame: under load the
  per-message gRPC cost is shared by many messages.
- After a failed connect the link refuses requests (as not sent) for a short backoff, so
  a dead peer costs callers nothing but a dictionary lookup; the next try dials a new
  channel, so the link's backoff alone decides when a returning peer is reached.
- At most ``max_pending`` requests wait for an answer; more are refused at once as not
  sent, so a paused peer makes calls fail fast instead of growing this node's memory.
- The link dials as this node (its certificate, through ``Dialer``) and checks that the
  other end's certificate names the peer it meant to reach. The ``kv-peer`` header only
  names the sender for a plaintext cluster; with TLS the certificate is what counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from kvstore.net import replica_codec
from kvstore.net.channel import PLAINTEXT, Dialer
from kvstore.net.faults import FaultRules
from kvstore.net.link import Heard, Link, PeerError, reply_error
from kvstore.net.outbox import BATCH_LIMIT_BYTES, cut, gather_turns
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc

CONNECT_TIMEOUT_S = 0.5
BACKOFF_S = (0.1, 1.0)
PEER_METADATA = "kv-peer"  # names the sending node on a replica stream

__all__ = ["GrpcTransport", "PeerError", "PeerLink"]


class PeerLink:
    def __init__(
        self,
        peer_id: str,
        address: str,
        on_heard: Heard | None = None,
        *,
        local_id: str = "",
        faults: FaultRules | None = None,
        dialer: Dialer = PLAINTEXT,
        max_pending: int = 8192,
    ) -> None:
        self.dialer = dialer
        self.max_pending = max_pending
        self.peer_id = peer_id
        self.local_id = local_id
        self.faults = faults or FaultRules()
        self.address = address
        self._on_heard = on_heard
        self._channel: grpc.aio.Channel | None = None
        self._ids = itertools.count(1)
        self._pending: dict[
            int,
            tuple[asyncio.Future[Any], asyncio.TimerHandle | None, Callable[[float], None] | None],
        ] = {}
        self._outbox: list[list[Any]] = []
        self._generation = 0
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._refuse_until = 0.0
        self._backoff = BACKOFF_S[0]
        self._closed = False
        self.frames_sent = 0
        self.messages_sent = 0
        self.refused_full = 0  # requests refused because max_pending were unanswered

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def connected(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def request(
        self, body: list[Any], timeout_s: float, served: Callable[[float], None] | None = None
    ) -> asyncio.Future[Any]:
        """Queue one request; the future resolves to the reply payload or PeerError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(PeerError(f"link to {self.peer_id} is closed", sent=False))
            return future
        if time.monotonic() < self._refuse_until:
            future.set_exception(
                PeerError(f"{self.peer_id} at {self.address} is unreachable", sent=False)
            )
            return future
        if len(self._pending) >= self.max_pending:
            self.refused_full += 1
            future.set_exception(
                PeerError(
                    f"{self.peer_id} has {len(self._pending)} requests unanswered "
                    f"(max_peer_pending); not sent",
                    sent=False,
                )
            )
            return future
        rid = next(self._ids)
        handle = loop.call_later(timeout_s, self._expire, rid)
        self._pending[rid] = (future, handle, served)
        message = [rid, *body]
        if self.faults.active:
            if self.faults.blocks(self.peer_id):
                return future  # lost on the wire: only its deadline will answer
            if self.faults.delay_s > 0:
                loop.call_later(self.faults.delay_s, self._enqueue, message)
                return future
        self._enqueue(message)
        return future

    def _enqueue(self, message: list[Any]) -> None:
        if self._closed or message[0] not in self._pending:
            return
        self._outbox.append(message)
        self._wakeup.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"peer-{self.peer_id}")

    def _expire(self, rid: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is None or entry[0].done():
            return
        # A message still queued (say, while the link connects) is taken out, so that
        # "not sent" stays true: otherwise it could leave after its caller was told the
        # write certainly did not happen.
        queued = len(self._outbox)
        self._outbox = [message for message in self._outbox if message[0] != rid]
        sent = len(self._outbox) == queued
        entry[0].set_exception(PeerError(f"{self.peer_id} did not answer in time", sent=sent))

    async def _run(self) -> None:
        """Connect, then pump frames both ways until the stream breaks."""
        generation = self._generation
        if self._channel is None:
            self._channel = self.dialer.aio(self.address, self.peer_id)
        try:
            await asyncio.wait_for(self._channel.channel_ready(), CONNECT_TIMEOUT_S)
        except (TimeoutError, grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            self._refuse_until = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_S[1])
            self._fail_all(f"cannot connect to {self.peer_id} at {self.address}", sent=False)
            if isinstance(exc, asyncio.CancelledError):
                raise
            # A fresh channel next time: a channel left behind keeps gRPC's own reconnect
            # backoff, which grows while the peer is absent and can outlast the connect
            # timeout just after the peer comes up (the first calls then fail for nothing).
            channel, self._channel = self._channel, None
            await channel.close(None)
            return
        self._backoff = BACKOFF_S[0]
        stub = pb_grpc.ReplicaStub(self._channel)
        call = stub.Stream(self._frames(generation), metadata=((PEER_METADATA, self.local_id),))
        try:
            async for frame in call:
                self._dispatch(frame.payload)
        except grpc.aio.AioRpcError as exc:
            self._fail_all(f"stream to {self.peer_id} broke: {exc.code().name}", sent=True)
        except asyncio.CancelledError:
            call.cancel()
            self._fail_all(f"link to {self.peer_id} closed", sent=True)
            raise
        else:
            self._fail_all(f"stream to {self.peer_id} ended", sent=True)
        finally:
            # This stream is over the moment it ends: gRPC may still poll its iterator,
            # which then wakes with the next request queued and must not send it into the
            # dead call (it did: the first request after a refused or broken stream was
            # lost until its deadline, 30 s for a membership change's first chunk).
            self._generation += 1

    async def _frames(self, generation: int) -> AsyncIterator[pb.Frame]:
        # A generation number keeps the iterator of a broken stream, should gRPC still
        # be polling it, from taking messages meant for its successor.
        while True:
            await self._wakeup.wait()
            if generation != self._generation:
                return
            self._wakeup.clear()
            await gather_turns(lambda: len(self._outbox))  # every task ready now queues
            if generation != self._generation:
                self._wakeup.set()  # what is queued is the next stream's: leave it a wake-up
                return
            while self._outbox:
                batch, rest = cut(self._outbox, replica_codec.message_size, BATCH_LIMIT_BYTES)
                self._outbox = rest
                self.frames_sent += 1
                self.messages_sent += len(batch)
                yield pb.Frame(payload=replica_codec.pack(batch))

    def _dispatch(self, payload: bytes) -> None:
        if self.faults.active and self.peer_id in self.faults.isolated:
            return  # replies from across a partition are lost too
        try:
            replies = replica_codec.unpack(payload)
        except ValueError:
            replies = []  # nonsense from a peer: the requests it answered will expire
        newest: int | None = None
        for reply in replies:
            fields = replica_codec.reply_fields(reply)
            if fields is None:
                continue
            rid, status, result, service_s, epoch = fields
            if epoch is not None and (newest is None or epoch > newest):
                newest = epoch
            entry = self._pending.pop(rid, None)
            if entry is None:
                continue  # expired already
            future, handle, served = entry
            if handle is not None:
                handle.cancel()
            if future.done():
                continue
            if status == replica_codec.OK:
                if served is not None and service_s is not None:
                    served(service_s)
                future.set_result(result)
            else:
                future.set_exception(reply_error(self.peer_id, status, result, epoch))
        if self._on_heard is not None:
            self._on_heard(self.peer_id, newest)

    def _fail_all(self, why: str, *, sent: bool) -> None:
        queued = {message[0] for message in self._outbox}
        self._outbox = []
        pending, self._pending = self._pending, {}
        for rid, (future, handle, _) in pending.items():
            if handle is not None:
                handle.cancel()
            if not future.done():
                future.set_exception(PeerError(why, sent=sent and rid not in queued))

    async def close(self) -> None:
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        self._fail_all(f"link to {self.peer_id} closed", sent=True)
        if self._channel is not None:
            await self._channel.close(None)


class GrpcTransport:
    """Production transport: a ``PeerLink`` per peer, dialled as ``local_id``, with the
    node's network faults (``FaultRules``, shared and mutated in place by SetFaults)."""

    def __init__(
        self, local_id: str, faults: FaultRules, *, dialer: Dialer = PLAINTEXT, max_pending: int
    ) -> None:
        self.local_id = local_id
        self.faults = faults
        self.dialer = dialer
        self.max_pending = max_pending

    def link(self, peer_id: str, address: str, on_heard: Heard) -> Link:
        return PeerLink(
            peer_id,
            address,
            on_heard,
            local_id=self.local_id,
            faults=self.faults,
            dialer=self.dialer,
            max_pending=self.max_pending,
        )
