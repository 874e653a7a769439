"""Client sessions, server side: many calls multiplexed on one stream (``KV.Session``).

Rules and invariants:
- Every call in a batch runs as its own task through ``kv_calls``, exactly as the unary
  method runs it; its answer, a reply or a ``CallError``, joins the outbox when ready.
- Everything in the outbox when the writer wakes leaves as one ``ResultBatch`` (cut to
  stay under the message size limit): answers that became ready together share one gRPC
  message, which is the point of a session (per-message gRPC cost dominates here).
- A call whose client went away still runs to its end (its writes are already on their
  way to replicas; cutting it short would only add uncertainty); its answer is dropped.
- The stream ends after the client closed its side and every call it sent was answered.
- An exception other than ``KVError`` is a bug: that call alone gets an indefinite
  ``internal`` error, and the session and the node carry on.
- At most ``max_session_calls`` calls run at once on one session; a call beyond that is
  answered at once with ``Overloaded`` (definite: it never ran), so one client cannot
  make a node hold unbounded work. The caller's identity is the stream's, checked per
  call against what the call does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from kvstore.errors import InvalidArgument, KVError, Overloaded
from kvstore.net.outbox import Outbox
from kvstore.net.status import to_call_error
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2 as pb
from kvstore.security.identity import Identity
from kvstore.server.kv_calls import get_reply, put_reply

log = logging.getLogger("kvstore.session")


async def answer(node: Node, caller: Identity, call: pb.Call) -> pb.CallResult:
    """Run one call; every outcome, failures included, becomes its ``CallResult``."""
    try:
        op = call.WhichOneof("op")
        if op == "put":
            put = call.put
            return pb.CallResult(
                id=call.id, put=await put_reply(node, caller, put.key, put.value, put.options)
            )
        if op == "delete":
            delete = call.delete
            return pb.CallResult(
                id=call.id, put=await put_reply(node, caller, delete.key, None, delete.options)
            )
        if op == "get":
            return pb.CallResult(id=call.id, get=await get_reply(node, caller, call.get))
        raise InvalidArgument(f"call {call.id} names no operation (put, get or delete)")
    except KVError as exc:
        return pb.CallResult(id=call.id, error=to_call_error(exc))
    except Exception as exc:
        log.exception("session call %d failed", call.id)
        error = pb.CallError(code="internal", message=f"{type(exc).__name__}: {exc}")
        return pb.CallResult(id=call.id, error=error)


async def serve_session(
    node: Node, caller: Identity, request_iterator: AsyncIterator[pb.CallBatch]
) -> AsyncIterator[pb.ResultBatch]:
    limit = node.config.max_session_calls
    outbox: Outbox[pb.CallResult] = Outbox(pb.CallResult.ByteSize)
    running: set[asyncio.Task[None]] = set()
    client_done = False

    async def run(call: pb.Call) -> None:
        outbox.put(await answer(node, caller, call))

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not running:
            outbox.wake()

    async def pump() -> None:
        nonlocal client_done
        try:
            async for batch in request_iterator:
                await outbox.room(limit)  # the client is not reading: stop reading it
                for call in batch.calls:
                    if len(running) >= limit:
                        node.counters["session.overloaded"] += 1
                        refused = Overloaded(
                            f"{len(running)} calls already in flight on this session "
                            f"(max_session_calls={limit}); not run, retry later"
                        )
                        outbox.put(pb.CallResult(id=call.id, error=to_call_error(refused)))
                        continue
                    task = asyncio.ensure_future(run(call))
                    running.add(task)
                    task.add_done_callback(finished)
        finally:
            client_done = True
            outbox.wake()

    async for results in outbox.stream(pump(), lambda: client_done and not running):
        yield pb.ResultBatch(results=results)
