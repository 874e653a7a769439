"""Validation of keys and values, shared by the client and every coordinator.

Rules: keys are non-empty bytes of at most ``max_key_bytes`` (str is UTF-8 encoded);
values are bytes of at most ``max_value_bytes`` (str is UTF-8 encoded; empty is allowed).
Anything else is ``InvalidArgument`` that names what was wrong, before anything is sent.
"""

from __future__ import annotations

from kvstore.errors import InvalidArgument


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if not isinstance(data, bytes):
        raise InvalidArgument(f"{what}, not {type(data).__name__}")
    return data


def as_key(key: object, max_bytes: int) -> bytes:
    key = _as_bytes(key, "key must be str or bytes")
    if not key:
        raise InvalidArgument("key must not be empty")
    if len(key) > max_bytes:
        raise InvalidArgument(f"key is {len(key)} bytes; the limit is {max_bytes}")
    return key


def as_value(value: object, max_bytes: int) -> bytes:
    value = _as_bytes(value, "value must be bytes or str")
    if len(value) > max_bytes:
        raise InvalidArgument(f"value is {len(value)} bytes; the limit is {max_bytes}")
    return value
