"""Client sessions, client side: one long-lived ``KV.Session`` stream per coordinator.

Rules and invariants:
- ``call`` returns the coordinator's reply or raises the ``KVError`` it answered with;
  it never waits past its deadline (``RequestTimeout``, indefinite: the call may run).
- Definite vs indefinite stays exact: a call still in the outbox when its stream fails,
  or whose stream could not be opened, certainly never left this client
  (``CoordinatorUnreachable``, definite: the client may try another coordinator); a
  call sent on a stream that then broke may have run (indefinite).
- Every call queued while the sender task sleeps leaves as one ``CallBatch``: with many
  calls in flight, one gRPC message carries many of them.
- A coordinator that refused the connection is not redialled for a short backoff; calls
  meanwhile fail at once, definitely, so the client moves on to the next coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import grpc

from kvstore.errors import CoordinatorUnreachable, KVError, RequestTimeout
from kvstore.net.status import from_call_error
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc

CONNECT_TIMEOUT_S = 1.0
REFUSED_BACKOFF_S = 0.2
MAX_BATCH_BYTES = 1 << 20


class SessionLink:
    def __init__(self, target: str, channel: grpc.aio.Channel) -> None:
        self.target = target  # "n1 (127.0.0.1:7101)", for messages
        self._stub = pb_grpc.KVStub(channel)
        self._channel = channel
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.CallResult]] = {}
        self._outbox: list[pb.Call] = []
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._generation = 0
        self._stream: grpc.aio.StreamStreamCall[pb.CallBatch, pb.ResultBatch] | None = None
        self._refuse_until = 0.0
        self.batches_sent = 0
        self.calls_sent = 0

    async def call(self, call: pb.Call, timeout_s: float) -> pb.CallResult:
        """Send one call (its ``id`` is set here) and wait for its result."""
        if time.monotonic() < self._refuse_until:
            raise CoordinatorUnreachable(f"{self.target} refused the connection", definite=True)
        self._retire_if_disconnected()
        loop = asyncio.get_running_loop()
        call.id = next(self._ids)
        future: asyncio.Future[pb.CallResult] = loop.create_future()
        self._pending[call.id] = future
        self._outbox.append(call)
        self._wakeup.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"session-{self.target}")
        expiry = loop.call_later(timeout_s, self._expire, call.id)
        try:
            result = await future
        except asyncio.CancelledError:
            self._withdraw(call.id)  # the caller gave up: do not send it after all
            raise
        finally:
            expiry.cancel()
            self._pending.pop(call.id, None)
        if result.HasField("error"):
            raise from_call_error(result.error, self.target)
        return result

    def _expire(self, call_id: int) -> None:
        future = self._pending.pop(call_id, None)
        if future is None or future.done():
            return
        if self._withdraw(call_id):
            future.set_exception(
                CoordinatorUnreachable(
                    f"{self.target}: not sent before the deadline (no stream)", definite=True
                )
            )
        else:
            future.set_exception(
                RequestTimeout(f"no answer from {self.target} before the deadline", definite=False)
            )

    def _withdraw(self, call_id: int) -> bool:
        """Take a call out of the outbox; True if it was still there (never sent)."""
        kept = [c for c in self._outbox if c.id != call_id]
        withdrawn = len(kept) < len(self._outbox)
        self._outbox = kept
        return withdrawn

    async def _run(self) -> None:
        """Open the stream, then pump batches both ways until it breaks."""
        if not await self._ready():
            self._refuse_until = time.monotonic() + REFUSED_BACKOFF_S
            self._fail_all(f"{self.target} is unreachable", definite_for_sent=True)
            return
        self._generation += 1
        generation = self._generation
        stream = self._stub.Session(self._batches(generation))
        self._stream = stream
        why = f"{self.target}: session ended"
        try:
            async for batch in stream:
                for result in batch.results:
                    future = self._pending.pop(result.id, None)
                    if future is not None and not future.done():
                        future.set_result(result)
        except grpc.aio.AioRpcError as exc:
            why = f"{self.target}: session broke: {exc.code().name.lower()}"
        except asyncio.CancelledError:
            stream.cancel()
            why = f"{self.target}: session closed"
            raise
        finally:
            # A stream retired by ``_retire_if_disconnected`` already failed its calls;
            # the calls pending now belong to its successor.
            if generation == self._generation:
                self._generation += 1  # retire this stream's batch iterator
                self._stream = None
                self._fail_all(why)
            self._wakeup.set()

    def _retire_if_disconnected(self) -> None:
        """Retire a stream whose connection is gone before its runner has noticed.

        Otherwise a call made right after a coordinator died would be written into the
        dead stream and fail indefinitely, instead of definitely (not sent) with the
        client moving on to the next coordinator.
        """
        if self._stream is None or self._runner is None or self._runner.done():
            return
        if self._channel.get_state() is grpc.ChannelConnectivity.READY:
            return
        self._generation += 1
        self._stream = None
        self._fail_all(f"{self.target}: connection lost")
        self._runner.cancel()
        self._runner = None

    async def _ready(self) -> bool:
        """Wait until the channel is READY; False as soon as connecting failed."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        state = self._channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel.wait_for_state_change(state), left)
            state = self._channel.get_state(try_to_connect=True)
        return True

    async def _batches(self, generation: int) -> AsyncIterator[pb.CallBatch]:
        # The generation keeps a dead stream's iterator from taking its successor's calls.
        while True:
            await self._wakeup.wait()
            if generation != self._generation:
                return
            self._wakeup.clear()
            await asyncio.sleep(0)  # one more turn: let every task ready now queue its message
            while self._outbox:
                calls, self._outbox = _cut(self._outbox)
                self.batches_sent += 1
                self.calls_sent += len(calls)
                yield pb.CallBatch(calls=calls)

    def _fail_all(self, why: str, *, definite_for_sent: bool = False) -> None:
        queued = {c.id for c in self._outbox}
        self._outbox = []
        pending, self._pending = self._pending, {}
        for call_id, future in pending.items():
            if not future.done():
                definite = definite_for_sent or call_id in queued
                error: KVError = CoordinatorUnreachable(why, definite=definite)
                future.set_exception(error)

    async def close(self) -> None:
        self._generation += 1
        self._stream = None
        self._wakeup.set()
        self._fail_all(f"{self.target}: session closed")
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner


def _cut(calls: list[pb.Call]) -> tuple[list[pb.Call], list[pb.Call]]:
    """The longest head of ``calls`` whose values fit one message (at least one)."""
    size = 0
    for i, call in enumerate(calls):
        size += len(call.put.value) if call.HasField("put") else 0
        if size > MAX_BATCH_BYTES and i > 0:
            return calls[:i], calls[i:]
    return calls, []
