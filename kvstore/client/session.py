"""Client sessions, client side: one long-lived ``KV.Session`` stream per coordinator.

Rules and invariants:
- ``call`` returns the coordinator's reply or raises the ``KVError`` it answered with;
  it never waits past its deadline (``RequestTimeout``, indefinite: the call may run).
- Definite vs indefinite stays exact, by one fact: a call still in the outbox certainly
  never left this client (``CoordinatorUnreachable``, definite: the client may try another
  coordinator); a call taken from the outbox was handed to a stream and may have run, so
  anything that then goes wrong with it is indefinite.
- Only the current stream's sender takes calls from the outbox. A stream is retired when
  it ends or when its connection is seen gone; a retired stream's calls stay its own: it
  still delivers their answers, and fails them (indefinitely) when it ends.
- Every call queued while the sender sleeps, and in the loop turns that keep adding to
  them (``outbox.gather_turns``), leaves as one ``CallBatch``: with many calls in
  flight, one gRPC message carries many of them.
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

from kvstore.errors import CoordinatorUnreachable, RequestTimeout
from kvstore.net.outbox import BATCH_LIMIT_BYTES, cut, gather_turns
from kvstore.net.status import from_call_error, from_rpc_error
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc

CONNECT_TIMEOUT_S = 1.0
REFUSED_BACKOFF_S = 0.2


class SessionLink:
    def __init__(self, target: str, channel: grpc.aio.Channel) -> None:
        self.target = target  # "n1 (127.0.0.1:7101)", for messages
        self._stub = pb_grpc.KVStub(channel)
        self._channel = channel
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.CallResult]] = {}
        self._outbox: list[pb.Call] = []
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None  # the current stream's
        self._runners: set[asyncio.Task[None]] = set()  # retired ones still draining too
        self._generation = 0  # of the current stream; a retired sender sees it moved
        self._streaming = False  # the current runner has its stream open
        self._refuse_until = 0.0
        self._closed = False
        self.batches_sent = 0
        self.calls_sent = 0

    async def call(self, call: pb.Call, timeout_s: float) -> pb.CallResult:
        """Send one call (its ``id`` is set here) and wait for its result."""
        if self._closed:
            raise CoordinatorUnreachable(f"{self.target}: session closed", definite=True)
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
            self._start_runner()
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

    def _start_runner(self) -> None:
        runner = asyncio.create_task(self._run(), name=f"session-{self.target}")
        self._runner = runner
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

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
        """Open a stream, then pump batches both ways until it ends."""
        if not await self._ready():
            self._refuse_until = time.monotonic() + REFUSED_BACKOFF_S
            self._fail_queued(await self._why_unreachable())
            return
        self._generation += 1
        generation = self._generation
        sent: set[int] = set()  # ids this stream took from the outbox, not yet answered
        stream = self._stub.Session(self._batches(generation, sent))
        self._streaming = True
        why = f"{self.target}: session ended"
        try:
            async for batch in stream:
                for result in batch.results:
                    sent.discard(result.id)
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
            self._fail_sent(sent, why)
            if generation == self._generation:  # not retired: nobody else will send these
                self._generation += 1
                self._streaming = False
                self._fail_queued(why)
            self._wakeup.set()

    def _retire_if_disconnected(self) -> None:
        """Retire the current stream if its connection is gone (or going: a server
        shutting down says so) before its runner has noticed.

        Otherwise a call made right after a coordinator died would be written into the
        dead stream and fail indefinitely, instead of definitely (never sent) with the
        client moving on to the next coordinator. The retired stream keeps its calls.
        """
        if not self._streaming or self._runner is None or self._runner.done():
            return
        if self._channel.get_state() is grpc.ChannelConnectivity.READY:
            return
        self._generation += 1  # its sender takes nothing more
        self._streaming = False
        self._runner = None

    async def _why_unreachable(self) -> str:
        """What gRPC says of the failed connection (refused, or a TLS handshake), which
        the channel's state does not tell: one cheap RPC that fails at once asks it."""
        try:
            await pb_grpc.AdminStub(self._channel).Echo(pb.EchoMessage(), timeout=0.5)
        except grpc.aio.AioRpcError as exc:
            return from_rpc_error(exc, self.target).message
        return f"{self.target} is unreachable"

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

    async def _batches(self, generation: int, sent: set[int]) -> AsyncIterator[pb.CallBatch]:
        # Checked again before every take: a retired stream's sender, woken or resumed by
        # gRPC at any point, must never take the calls queued for its successor.
        while generation == self._generation:
            await self._wakeup.wait()
            if generation != self._generation:
                return
            self._wakeup.clear()
            await gather_turns(lambda: len(self._outbox))  # every task ready now queues
            while self._outbox and generation == self._generation:
                calls, self._outbox = cut(self._outbox, pb.Call.ByteSize, BATCH_LIMIT_BYTES)
                sent.update(call.id for call in calls)
                self.batches_sent += 1
                self.calls_sent += len(calls)
                yield pb.CallBatch(calls=calls)

    def _fail_queued(self, why: str) -> None:
        """Fail the calls still in the outbox: they never left (definite)."""
        queued, self._outbox = self._outbox, []
        for call in queued:
            future = self._pending.pop(call.id, None)
            if future is not None and not future.done():
                future.set_exception(CoordinatorUnreachable(why, definite=True))

    def _fail_sent(self, ids: set[int], why: str) -> None:
        """Fail calls a stream took and did not answer: they may have run (indefinite)."""
        for call_id in ids:
            future = self._pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_exception(CoordinatorUnreachable(why, definite=False))
        ids.clear()

    async def close(self) -> None:
        self._closed = True
        self._generation += 1
        self._streaming = False
        self._wakeup.set()
        self._fail_queued(f"{self.target}: session closed")
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()  # each fails the calls its stream had taken
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await runner
