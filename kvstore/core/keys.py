"""Validation of keys and values, shared by the client and every coordinator.

Rules: keys are non-empty bytes of at most ``max_key_bytes`` (str is UTF-8 encoded);
values are bytes of at most ``max_value_bytes`` (str is UTF-8 encoded; empty is allowed).
Anything else is ``InvalidArgument`` that names what was wrong, before anything is sent.
"""

from __future__ import annotations

from kvstore.errors import InvalidArgument


def as_key(key: object, max_bytes: int) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, bytearray | memoryview):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise InvalidArgument(f"key must be str or bytes, not {type(key).__name__}")
    if not key:
        raise InvalidArgument("key must not be empty")
    if len(key) > max_bytes:
        raise InvalidArgument(f"key is {len(key)} bytes; the limit is {max_bytes}")
    return key


def as_value(value: object, max_bytes: int) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise InvalidArgument(f"value must be bytes or str, not {type(value).__name__}")
    if len(value) > max_bytes:
        raise InvalidArgument(f"value is {len(value)} bytes; the limit is {max_bytes}")
    return value
