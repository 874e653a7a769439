"""gRPC servicers: the KV client API, the replica stream and the admin API of one node.

Rules: servicers translate and delegate; all decisions live in the node runtime and the
core. A ``KVError`` leaves as its status code with ``kv-definite`` trailing metadata;
any other exception is a bug and leaves as INTERNAL (indefinite) without killing the node.

Who may do what is decided here, from the certificate the handshake verified
(``kvstore.security.identity``), before anything else runs: KV calls by role (read,
write), Admin by the admin role, the Replica stream only by a node of this cluster,
whose frames then speak for that node alone (a ``kv-peer`` header naming another node
is refused). SetFaults exists only on a node started with faults enabled. With TLS off
(the explicit opt-out) every caller is allowed everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
import msgpack

from kvstore.core import epoch_wire
from kvstore.core.epochs import Accept, Learn, Prepare
from kvstore.core.keys import as_key
from kvstore.errors import InvalidArgument, KVError, PermissionDenied, Unauthenticated
from kvstore.net import replica_codec
from kvstore.net.convert import ts_to_pb
from kvstore.net.faults import PLANTED_BUGS
from kvstore.net.link import PeerError
from kvstore.net.outbox import Outbox
from kvstore.net.peer import PEER_METADATA
from kvstore.net.status import to_status
from kvstore.node.antientropy import AntiEntropy
from kvstore.node.ranges import range_stats
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.security.identity import (
    ADMIN,
    INSECURE,
    PEER,
    Identity,
    from_auth_context,
    require,
)
from kvstore.server.kv_calls import get_reply, put_reply
from kvstore.server.session import serve_session

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


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], error: KVError) -> None:
    await _guard(context, _raise(error))


class Gate:
    """The node's door: whom a call comes from, and whether they may make it."""

    def __init__(self, secure: bool) -> None:
        self.secure = secure

    async def caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        if not self.secure:
            return INSECURE
        identity = from_auth_context(context.auth_context())
        if identity is None:
            await _refuse(context, Unauthenticated("no kvstore certificate identifies the caller"))
            raise AssertionError("unreachable")
        return identity

    async def require(self, context: grpc.aio.ServicerContext[Any, Any], need: str,
                      what: str) -> Identity:  # fmt: skip
        identity = await self.caller(context)
        try:
            require(identity, need, what)
        except PermissionDenied as exc:
            await _refuse(context, exc)
        return identity


class KVServicer(pb_grpc.KVServicer):
    def __init__(self, node: Node, gate: Gate) -> None:
        self.node = node
        self.gate = gate

    async def Put(
        self, request: pb.PutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PutReply:
        caller = await self.gate.caller(context)
        return await _guard(
            context, put_reply(self.node, caller, request.key, request.value, request.options)
        )

    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PutReply:
        caller = await self.gate.caller(context)
        return await _guard(
            context, put_reply(self.node, caller, request.key, None, request.options)
        )

    async def Get(
        self, request: pb.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetReply:
        caller = await self.gate.caller(context)
        return await _guard(context, get_reply(self.node, caller, request))

    async def Session(
        self,
        request_iterator: AsyncIterator[pb.CallBatch],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ResultBatch]:
        # grpc.aio recognises a streaming handler by its being an async generator.
        caller = await self.gate.caller(context)
        async for batch in serve_session(self.node, caller, request_iterator):
            yield batch


class ReplicaServicer(pb_grpc.ReplicaServicer):
    def __init__(self, node: Node, gate: Gate) -> None:
        self.node = node
        self.gate = gate

    async def _peer(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The node this stream speaks for: its certificate's (the header's, TLS off)."""
        claimed = dict(context.invocation_metadata() or ()).get(PEER_METADATA, "")
        if not self.gate.secure:
            return str(claimed)
        identity = await self.gate.require(context, PEER, "open the replica stream")
        if identity.name not in self.node.links:
            await _refuse(
                context,
                PermissionDenied(f"{identity} is not a peer of {self.node.id} in this cluster"),
            )
        if claimed and claimed != identity.name:
            self.node.counters["replica.impersonation"] += 1
            await _refuse(
                context,
                PermissionDenied(f"{identity}'s certificate cannot speak for {claimed!r}"),
            )
        return identity.name

    async def Stream(
        self,
        request_iterator: AsyncIterator[pb.Frame],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.Frame]:
        peer = await self._peer(context)
        outbox: Outbox[list[Any]] = Outbox(replica_codec.message_size)
        finished = False
        faults = self.node.faults
        backlog = self.node.config.max_peer_pending

        async def pump() -> None:
            nonlocal finished
            try:
                async for frame in request_iterator:
                    await outbox.room(backlog)  # the peer is not reading its replies
                    try:
                        messages = replica_codec.unpack(frame.payload)
                    except ValueError as exc:
                        # nonsense gets one error reply (request id 0) and the stream lives
                        self.node.counters["replica.malformed"] += 1
                        outbox.put([0, replica_codec.ERROR, str(exc)])
                        continue
                    if faults.active and peer in faults.isolated:
                        continue  # a partition: the frame never arrived
                    self.node.handle_frame(messages, outbox.put)
            finally:
                finished = True
                outbox.wake()

        async for batch in outbox.stream(pump(), lambda: finished):
            yield pb.Frame(payload=replica_codec.pack(batch))


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, node: Node, gate: Gate, anti_entropy: AntiEntropy | None = None) -> None:
        self.node = node
        self.gate = gate
        self.anti_entropy = anti_entropy

    async def Status(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StatusReply:
        await self.gate.require(context, ADMIN, "read the node's status")
        status = await self.node.status()
        reply = pb.StatusReply(
            node=status["node"],
            cluster=status["cluster"],
            address=status["address"],
            pid=status["pid"],
            uptime_s=status["uptime_s"],
            keys=status["keys"],
            faults_enabled=status["faults_enabled"],
            tls=self.gate.secure,
        )
        if status["clock_offset_us"] is not None:
            reply.clock_offset_ms = status["clock_offset_us"] // 1000
        for name, value in status["counters"].items():
            reply.counters[name] = value
        for peer in status.get("peers", []):
            reply.peers.append(pb.PeerView(**peer))
        for owner, pending in status.get("hints_pending", {}).items():
            reply.hints_pending[owner] = pending
        ring = status["ring"]
        reply.ring.n, reply.ring.vnodes, reply.ring.epoch = ring["n"], ring["vnodes"], ring["epoch"]
        for member_id, address in ring["members"]:
            reply.ring.members.append(pb.RingMember(id=member_id, address=address))
        for member_id, address in ring["target"]:
            reply.ring.target.append(pb.RingMember(id=member_id, address=address))
        reply.ring.phase = ring["phase"]
        for stream in status["streams"]:
            reply.streams.append(pb.StreamView(**stream))
        return reply

    async def Pull(
        self, request: pb.PullRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PullReply:
        await self.gate.require(context, ADMIN, "stream ranges into this node")
        ranges = [(r.first, r.last) for r in request.ranges]
        after = request.after if request.HasField("after") else None
        budget = request.budget_s if request.budget_s > 0 else 5.0
        try:
            if not 0 <= request.rate_keys_s < 1e9 or not budget <= 600:
                raise ValueError("rate_keys_s must be in 0..1e9 and budget_s at most 600")
            got = await self.node.pull_ranges(
                request.source, ranges, after, request.rate_keys_s, budget
            )
        except ValueError as exc:  # bad ranges, an unknown source, a bad chunk
            await _refuse(context, InvalidArgument(str(exc)))
            raise AssertionError("unreachable") from None
        except PeerError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{request.source}: {exc}")
            raise AssertionError("unreachable") from None
        reply = pb.PullReply(
            keys=got.keys, stored=got.stored, tombstones=got.tombstones, bytes=got.size,
            chunks=got.chunks,
        )  # fmt: skip
        if got.next is not None:
            reply.next = got.next
        return reply

    async def CleanUp(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CleanUpReply:
        await self.gate.require(context, ADMIN, "drop the copies this node no longer owns")
        epoch = self.node.epoch
        try:
            got = await self.node.clean_up()
        except (ValueError, RuntimeError) as exc:  # not the phase for it, or the ring moved
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise AssertionError("unreachable") from None
        return pb.CleanUpReply(epoch=epoch, scanned=got.scanned, dropped=got.dropped)

    async def Epoch(
        self, request: pb.EpochFrame, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EpochFrame:
        await self.gate.require(context, ADMIN, "vote on the ring's membership")
        try:
            raw = msgpack.unpackb(request.payload, raw=False)
            message = epoch_wire.decode_message(raw, "the Epoch request")
            if not isinstance(message, (Prepare, Accept, Learn)):
                raise epoch_wire.WireError("the Epoch request: a reply is not a request")
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
            await _refuse(context, InvalidArgument(str(exc)))
            raise AssertionError("unreachable") from None
        reply = await self.node.epoch_message(message)
        return pb.EpochFrame(payload=msgpack.packb(epoch_wire.encode_message(reply)))

    async def RangeStats(
        self, request: pb.RangeStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RangeStatsReply:
        await self.gate.require(context, ADMIN, "count the keys of token ranges")
        ranges = [(r.first, r.last) for r in request.ranges]
        try:
            counts = await range_stats(self.node.engine, ranges)
        except ValueError as exc:
            await _refuse(context, InvalidArgument(str(exc)))
            raise AssertionError("unreachable") from None
        return pb.RangeStatsReply(
            counts=[
                pb.RangeCount(keys=c.keys, tombstones=c.tombstones, bytes=c.bytes) for c in counts
            ]
        )

    async def Echo(
        self, request: pb.EchoMessage, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EchoMessage:
        await self.gate.caller(context)
        return request

    async def SetFaults(
        self, request: pb.Faults, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Faults:
        await self.gate.require(context, ADMIN, "inject faults")
        if not self.node.faults_enabled:
            await _refuse(
                context,
                PermissionDenied(
                    f"fault injection is disabled on {self.node.id}: it exists only in a node "
                    f"started with --enable-faults (tests and the harness)"
                ),
            )
        faults = self.node.faults
        unknown = set(request.isolate_from) - set(self.node.links)
        bugs = set(request.planted_bugs) - set(PLANTED_BUGS)
        if unknown or bugs or not 0.0 <= request.drop <= 1.0:
            problem = (
                f"unknown peers {sorted(unknown)}"
                if unknown
                else f"unknown planted bugs {sorted(bugs)} (known: {', '.join(PLANTED_BUGS)})"
                if bugs
                else f"drop={request.drop} not in 0..1"
            )
            await _refuse(context, InvalidArgument(problem))
        faults.isolated = frozenset(request.isolate_from)
        faults.drop = request.drop
        faults.delay_s = request.delay_ms / 1000
        if request.HasField("clock_offset_ms"):
            self.node.clock_offset_us = request.clock_offset_ms * 1000
        faults.lying_disk = request.lying_disk
        faults.lose_hints = request.lose_hints
        faults.planted = frozenset(request.planted_bugs)
        if not request.lying_disk:
            await self.node.stop_lying()
        return pb.Faults(
            isolate_from=sorted(faults.isolated),
            drop=faults.drop,
            delay_ms=round(faults.delay_s * 1000),
            clock_offset_ms=self.node.clock_offset_us // 1000,
            lying_disk=faults.lying_disk,
            lose_hints=faults.lose_hints,
            planted_bugs=sorted(faults.planted),
        )

    async def Repair(
        self, request: pb.RepairRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RepairReply:
        await self.gate.require(context, ADMIN, "run a repair")
        if self.anti_entropy is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "anti-entropy is not running")
            raise AssertionError("unreachable")
        unknown = set(request.peers) - set(self.node.links)
        if unknown:
            await _refuse(context, InvalidArgument(f"unknown peers {sorted(unknown)}"))
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
        await self.gate.require(context, ADMIN, "read a replica's local copy")
        try:
            key = as_key(request.key, self.node.config.max_key_bytes)
        except KVError as exc:
            await _refuse(context, exc)
            raise AssertionError("unreachable") from None
        record = await self.node.local_version(key)
        reply = pb.LocalReadReply()
        reply.version.node = self.node.id
        if record is not None:
            reply.version.found = True
            reply.version.tombstone = record.value is None
            reply.version.ts.CopyFrom(ts_to_pb(record.ts))
            reply.value = record.value or b""
        return reply
