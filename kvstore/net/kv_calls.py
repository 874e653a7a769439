"""One client call against this node as coordinator, as protobuf in and out.

Rules: the unary KV methods and session streams both go through these two functions,
so a call means the same on either path. They raise ``KVError``; each path puts it on
the wire its own way (a status code, or a ``CallError`` in the session's reply).
"""

from __future__ import annotations

from kvstore.net.convert import options_from_pb, ts_to_pb
from kvstore.node.runtime import Node, ReplicaReport
from kvstore.pb import kvstore_pb2 as pb


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


async def put_reply(
    node: Node, key: bytes, value: bytes | None, options: pb.Options
) -> pb.PutReply:
    """Coordinate one put (``value`` None: a delete); raises ``KVError``."""
    result = await node.put(key, value, options_from_pb(options), trace=options.trace)
    reply = pb.PutReply(ts=ts_to_pb(result.ts), coordinator=node.id)
    if options.trace:
        reply.acks.extend(_acks(result.replicas))
    return reply


async def get_reply(node: Node, request: pb.GetRequest) -> pb.GetReply:
    """Coordinate one get; raises ``KVError``."""
    options = request.options
    result = await node.get(request.key, options_from_pb(options), trace=options.trace)
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
