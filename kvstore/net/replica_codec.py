"""The node-to-node message format carried inside ``Frame.payload`` (msgpack).

A frame holds a list of messages; batching many messages into one frame is the point
(per-message gRPC cost dominates a Python cluster). Messages are plain lists:

  request   [rid, op, *args]
    "w"  write:  [rid, "w", key, value|None, wall, logical, node, hint_for|None]
    "r"  read:   [rid, "r", key, hint_for|None]  (hint_for: asked as a fallback for
                 that owner, so hints held for it answer too; may be left out)
    "p"  ping:   [rid, "p", sender_id]
  response  [rid, status, payload]   status 0 = ok, 1 = error (payload: message)
    write -> applied (bool); read -> None | [value|None, wall, logical, node]; ping -> id

Invariants: encode/decode round-trip every message exactly; keys and values stay
bytes (``use_bin_type``), strings stay str; a malformed message raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from kvstore.core.version import Record, Timestamp

OK = 0
ERROR = 1


def pack(messages: list[list[Any]]) -> bytes:
    return msgpack.packb(messages, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(payload: bytes) -> list[list[Any]]:
    try:
        messages = msgpack.unpackb(payload, raw=False, use_list=True)
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


def read_args(key: bytes, hint_for: str | None) -> list[Any]:
    return ["r", key, hint_for]


def write_args(record: Record, hint_for: str | None) -> list[Any]:
    ts = record.ts
    return ["w", record.key, record.value, ts.wall, ts.logical, ts.node, hint_for]


def record_from_write(args: list[Any]) -> tuple[Record, str | None]:
    key, value, wall, logical, node, hint_for = args
    return Record(key, value, Timestamp(wall, logical, node)), hint_for


def encode_record(record: Record | None) -> list[Any] | None:
    if record is None:
        return None
    ts = record.ts
    return [record.value, ts.wall, ts.logical, ts.node]


def decode_record(key: bytes, raw: list[Any] | None) -> Record | None:
    if raw is None:
        return None
    value, wall, logical, node = raw
    return Record(key, value, Timestamp(wall, logical, node))
