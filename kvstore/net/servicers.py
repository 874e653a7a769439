"""gRPC servicers: the KV client API, the replica stream and the admin API of one node.

Rules: servicers translate and delegate; all decisions live in the node runtime and the
core. A ``KVError`` leaves as its status code with ``kv-definite`` trailing metadata;
any other exception is a bug and leaves as INTERNAL (indefinite) without killing the node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc

from kvstore.errors import InvalidArgument, KVError
from kvstore.net import replica_codec
from kvstore.net.convert import ts_to_pb
from kvstore.net.kv_calls import get_reply, put_reply
from kvstore.net.outbox import Outbox
from kvstore.net.peer import PEER_METADATA
from kvstore.net.session import serve_session
from kvstore.net.status import to_status
from kvstore.node.antientropy import AntiEntropy
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc

T = TypeVar("T")


async def _guard(context: grpc.aio.ServicerContext[Any, Any], work: Awaitable[T]) -> T:
    try:
        return await work
    except KVError as exc:
        code, details, metadata = to_status(exc)
        context.set_trailing_metadata(metadata)
        await context.abort(code, details)
        raise AssertionError("unreachable") from None


async def _raise(error: KVError) -> None:
    raise error


class KVServicer(pb_grpc.KVServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def Put(
        self, request: pb.PutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PutReply:
        return await _guard(
            context, put_reply(self.node, request.key, request.value, request.options)
        )

    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PutReply:
        return await _guard(context, put_reply(self.node, request.key, None, request.options))

    async def Get(
        self, request: pb.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetReply:
        return await _guard(context, get_reply(self.node, request))

    async def Session(
        self,
        request_iterator: AsyncIterator[pb.CallBatch],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ResultBatch]:
        # grpc.aio recognises a streaming handler by its being an async generator.
        async for batch in serve_session(self.node, request_iterator):
            yield batch


class ReplicaServicer(pb_grpc.ReplicaServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def Stream(
        self,
        request_iterator: AsyncIterator[pb.Frame],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.Frame]:
        outbox: Outbox[list[Any]] = Outbox(replica_codec.message_size)
        finished = False
        peer = dict(context.invocation_metadata() or ()).get(PEER_METADATA, "")
        faults = self.node.faults

        async def pump() -> None:
            nonlocal finished
            try:
                async for frame in request_iterator:
                    try:
                        messages = replica_codec.unpack(frame.payload)
                    except ValueError:
                        continue  # a peer speaking nonsense gets no reply; its calls time out
                    if faults.active and peer in faults.isolated:
                        continue  # a partition: the frame never arrived
                    self.node.handle_frame(messages, outbox.put)
            finally:
                finished = True
                outbox.wake()

        async for batch in outbox.stream(pump(), lambda: finished):
            yield pb.Frame(payload=replica_codec.pack(batch))


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, node: Node, anti_entropy: AntiEntropy | None = None) -> None:
        self.node = node
        self.anti_entropy = anti_entropy

    async def Status(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StatusReply:
        status = await self.node.status()
        reply = pb.StatusReply(
            node=status["node"],
            cluster=status["cluster"],
            address=status["address"],
            pid=status["pid"],
            uptime_s=status["uptime_s"],
            keys=status["keys"],
        )
        for name, value in status["counters"].items():
            reply.counters[name] = value
        for peer in status.get("peers", []):
            reply.peers.append(pb.PeerView(**peer))
        for owner, pending in status.get("hints_pending", {}).items():
            reply.hints_pending[owner] = pending
        return reply

    async def Echo(
        self, request: pb.EchoMessage, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EchoMessage:
        return request

    async def SetFaults(
        self, request: pb.Faults, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Faults:
        faults = self.node.faults
        unknown = set(request.isolate_from) - set(self.node.links)
        if unknown or not 0.0 <= request.drop <= 1.0:
            problem = (
                f"unknown peers {sorted(unknown)}"
                if unknown
                else f"drop={request.drop} not in 0..1"
            )
            await _guard(context, _raise(InvalidArgument(problem)))
        faults.isolated = frozenset(request.isolate_from)
        faults.drop = request.drop
        faults.delay_s = request.delay_ms / 1000
        if request.HasField("clock_offset_ms"):
            self.node.clock_offset_us = request.clock_offset_ms * 1000
        faults.lying_disk = request.lying_disk
        if not request.lying_disk:
            await self.node.stop_lying()
        return pb.Faults(
            isolate_from=sorted(faults.isolated),
            drop=faults.drop,
            delay_ms=round(faults.delay_s * 1000),
            clock_offset_ms=self.node.clock_offset_us // 1000,
            lying_disk=faults.lying_disk,
        )

    async def Repair(
        self, request: pb.RepairRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepairReply:
        if self.anti_entropy is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "anti-entropy is not running")
            raise AssertionError("unreachable")
        unknown = set(request.peers) - set(self.node.links)
        if unknown:
            await _guard(context, _raise(InvalidArgument(f"unknown peers {sorted(unknown)}")))
        report = await self.anti_entropy.repair(list(request.peers) or None)
        reply = pb.RepairReply(
            node=report.node,
            keys_repaired=report.keys_repaired,
            exchanges=report.exchanges,
            bytes=report.bytes,
        )
        for r in report.rounds:
            reply.peers.append(
                pb.PeerRepair(
                    peer=r.peer,
                    keys_pulled=r.keys_pulled,
                    keys_pushed=r.keys_pushed,
                    leaves_differing=r.leaves_differing,
                    bytes_sent=r.bytes_sent,
                    bytes_received=r.bytes_received,
                    round_trips=r.round_trips,
                    seconds=r.seconds,
                    error=r.error,
                )
            )
        return reply

    async def ReadLocal(
        self, request: pb.LocalReadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LocalReadReply:
        record = await self.node.local_version(request.key)
        reply = pb.LocalReadReply()
        reply.version.node = self.node.id
        if record is not None:
            reply.version.found = True
            reply.version.tombstone = record.value is None
            reply.version.ts.CopyFrom(ts_to_pb(record.ts))
            reply.value = record.value or b""
        return reply
