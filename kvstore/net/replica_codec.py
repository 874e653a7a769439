"""The node-to-node message format carried inside ``Frame.payload`` (msgpack).

A frame holds a list of messages; batching many messages into one frame is the point
(per-message gRPC cost dominates a Python cluster). Messages are plain lists:

  request   [rid, op, *args]
    "w"  write:  [rid, "w", key, value|None, wall, logical, node, hint_for|None, epoch]
    "r"  read:   [rid, "r", key, hint_for|None, epoch]  (hint_for: asked as a fallback
                 for that owner, so hints held for it answer too)
                 epoch: the ring epoch the requester placed the key with; a replica on
                 a newer one refuses the request unserved (status 2). Older nodes leave
                 the epoch out (and a read's hint_for), and are never refused.
    "p"  ping:   [rid, "p", sender_id, sender's ring epoch]  (older nodes leave the
                 epoch out)
  response  [rid, status, payload, service_us, epoch]   status 0 = ok, 1 = error
    (payload: message), 2 = refused for a stale epoch (payload: message; nothing was
    done, so the requester learns the newer ring and asks again); service_us:
    microseconds from the frame's arrival at the replica
    to this reply, on the replica's own clock. With the requester's round trip, on its
    clock, it splits a round trip into its legs without two clocks having to agree
    (``kvstore.node.metrics``). epoch: the ring epoch the replica serves, so a requester
    on an older one learns the newer from any answer. Older nodes leave out the last
    field or two.
    write -> applied (bool); read -> None | [value|None, wall, logical, node];
    ping -> [id, physical clock in us, ring epoch] (peers estimate their clock offsets
    from it, and learn a newer epoch; older nodes leave the epoch out)

Invariants: encode/decode round-trip every message exactly; keys and values stay
bytes (``use_bin_type``), strings stay str; a malformed message raises ``ValueError``.
Decoding what a peer sent validates every field (``kvstore.core.peer_input``): types,
key and value limits, node ids and timestamp ranges. Frames are bounded before they
are decoded (``max_bin_len`` and friends), so msgpack never allocates more than the
frame's own size allows.
"""

from __future__ import annotations

from typing import Any

import msgpack

from kvstore.core.peer_input import PeerInputError, PeerLimits, fields, integer
from kvstore.core.version import Record

OK = 0
ERROR = 1
STALE = 2
_MAX_SERVICE_US = 1 << 63


def reply_fields(
    reply: object,
) -> tuple[int, object, object, float | None, int | None] | None:
    """A peer's reply as (rid, status, payload, service seconds or None, the replica's
    ring epoch or None); None when it is not a reply at all (the request it answers then
    expires, as for any nonsense)."""
    if not isinstance(reply, list) or not 3 <= len(reply) <= 5 or type(reply[0]) is not int:
        return None
    service: float | None = None
    epoch: int | None = None
    if len(reply) >= 4:
        us = reply[3]
        if type(us) is not int or not 0 <= us < _MAX_SERVICE_US:
            return None
        service = us / 1e6
    if len(reply) == 5:
        epoch = reply[4]
        if type(epoch) is not int or not 0 <= epoch < _MAX_SERVICE_US:
            return None
    return reply[0], reply[1], reply[2], service, epoch


def pack(messages: list[list[Any]]) -> bytes:
    return msgpack.packb(messages, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(payload: bytes) -> list[list[Any]]:
    size = len(payload)
    try:
        messages = msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=size,
            max_str_len=size,
            max_array_len=size,
            max_map_len=size // 2,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"malformed replica frame: {exc}") from None
    if not isinstance(messages, list):
        raise ValueError("malformed replica frame: expected a list of messages")
    return messages


def message_size(message: list[Any]) -> int:
    """Roughly a message's encoded size: its keys and values, nested ones included (a
    read reply carries its value inside the payload); the rest is small."""
    size = 16
    for part in message:
        if isinstance(part, bytes):
            size += len(part)
        elif isinstance(part, list):
            size += message_size(part)
    return size


def read_args(key: bytes, hint_for: str | None, epoch: int) -> list[Any]:
    return ["r", key, hint_for, epoch]


def write_args(record: Record, hint_for: str | None, epoch: int) -> list[Any]:
    ts = record.ts
    return ["w", record.key, record.value, ts.wall, ts.logical, ts.node, hint_for, epoch]


def _epoch(raw: object) -> int:
    return integer(raw, "a request's ring epoch", 0, _MAX_SERVICE_US - 1)


def record_from_write(args: list[Any], limits: PeerLimits) -> tuple[Record, str | None, int | None]:
    """(record, hint_for, the requester's ring epoch or None) of a write request."""
    if not isinstance(args, list) or not 6 <= len(args) <= 7:
        raise PeerInputError("a write must be a list of 6 or 7 fields")
    key, value, wall, logical, node, hint_for = args[:6]
    record = limits.record(key, value, wall, logical, node)
    epoch = _epoch(args[6]) if len(args) == 7 else None
    return record, limits.optional_node(hint_for, "hint_for"), epoch


def read_request(args: list[Any], limits: PeerLimits) -> tuple[bytes, str | None, int | None]:
    """(key, hint_for, the requester's ring epoch or None) of a read request; the last
    two may be left out."""
    if not isinstance(args, list) or not 1 <= len(args) <= 3:
        raise PeerInputError("a read must be a list of 1 to 3 fields")
    hint_for = limits.optional_node(args[1], "hint_for") if len(args) > 1 else None
    epoch = _epoch(args[2]) if len(args) > 2 else None
    return limits.key(args[0]), hint_for, epoch


def encode_record(record: Record | None) -> list[Any] | None:
    if record is None:
        return None
    ts = record.ts
    return [record.value, ts.wall, ts.logical, ts.node]


def decode_record(key: bytes, raw: list[Any] | None, limits: PeerLimits) -> Record | None:
    if raw is None:
        return None
    value, wall, logical, node = fields(raw, 4, "a read reply")
    return limits.record(key, value, wall, logical, node)
