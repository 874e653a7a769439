"""One client call against this node as coordinator, as protobuf in and out.

Rules: the unary KV methods and session streams both go through these two functions,
so a call means the same on either path. They raise ``KVError``; each path puts it on
the wire its own way (a status code, or a ``CallError`` in the session's reply). Both
check the caller's role here, in one place, and hold one of the node's in-flight slots
(``Overloaded`` when none is free: refused before any work).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from kvstore.core.consistency import CallOptions
from kvstore.errors import KVError
from kvstore.net.convert import options_from_pb, ts_to_pb
from kvstore.node.runtime import Node, ReplicaReport
from kvstore.pb import kvstore_pb2 as pb
from kvstore.security.identity import READ, WRITE, Identity, require


def _acks(reports: list[ReplicaReport]) -> list[pb.ReplicaAck]:
    return [
        pb.ReplicaAck(node=r.node, ok=r.ok, fallback=r.fallback, error=r.error) for r in reports
    ]


def _versions(reports: list[ReplicaReport]) -> list[pb.ReplicaVersion]:
    out = []
    for r in reports:
        version = pb.ReplicaVersion(node=r.node, fallback=r.fallback, error=r.error)
        if r.record is not None:
            version.found = True
            version.tombstone = r.record.value is None
            version.ts.CopyFrom(ts_to_pb(r.record.ts))
        out.append(version)
    return out


T = TypeVar("T")


async def _measured(node: Node, op: str, call: CallOptions, work: Awaitable[T]) -> T:
    """Run one call, counting its outcome and timing it for the node's metrics."""
    metrics = node.metrics
    if metrics is None:
        return await work
    began = node.time.monotonic()
    outcome = "ok"
    try:
        return await work
    except KVError as exc:
        outcome = exc.code
        raise
    except Exception:
        outcome = "internal"
        raise
    finally:
        level = node.level_label(call, read=op == "get")
        metrics.observe(op, level, outcome, node.time.monotonic() - began)


async def put_reply(
    node: Node, caller: Identity, key: bytes, value: bytes | None, options: pb.Options
) -> pb.PutReply:
    """Coordinate one put (``value`` None: a delete); raises ``KVError``."""
    op = "put" if value is not None else "delete"
    require(caller, WRITE, op)
    call = options_from_pb(options)
    with node.admitted(op):
        result = await _measured(node, op, call, node.put(key, value, call, trace=options.trace))
    reply = pb.PutReply(ts=ts_to_pb(result.ts), coordinator=node.id)
    if options.trace:
        reply.acks.extend(_acks(result.replicas))
    return reply


async def get_reply(node: Node, caller: Identity, request: pb.GetRequest) -> pb.GetReply:
    """Coordinate one get; raises ``KVError``."""
    require(caller, READ, "get")
    options = request.options
    call = options_from_pb(options)
    with node.admitted("get"):
        result = await _measured(
            node, "get", call, node.get(request.key, call, trace=options.trace)
        )
    reply = pb.GetReply(coordinator=node.id)
    record = result.record
    if record is not None:
        reply.ts.CopyFrom(ts_to_pb(record.ts))
        if record.value is not None:
            reply.found = True
            reply.value = record.value
    if options.trace:
        reply.replicas.extend(_versions(result.replicas))
    return reply
