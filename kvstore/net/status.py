"""Errors on the wire: one gRPC status code per error class, both directions.

Rules: the server turns a ``KVError`` into (code, details, trailing metadata
``kv-definite``); the client turns any ``grpc.aio.AioRpcError`` back into the same class
with the same definiteness. A transport failure that the store did not raise itself is
indefinite unless the connection was never made (the request never left the client).
On a session stream the same error travels as a ``CallError`` (class code, message,
definiteness) and comes back as the same class; an unknown code is indefinite.
"""

from __future__ import annotations

from typing import cast

import grpc

from kvstore.errors import (
    CoordinatorRefused,
    CoordinatorUnreachable,
    InvalidArgument,
    KVError,
    Overloaded,
    PermissionDenied,
    QuorumFailed,
    RequestTimeout,
    Unauthenticated,
    Unavailable,
)
from kvstore.pb import kvstore_pb2 as pb

_CODE_OF: dict[type[KVError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    Unavailable: grpc.StatusCode.FAILED_PRECONDITION,
    RequestTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    QuorumFailed: grpc.StatusCode.ABORTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# refused before any work, whoever said so (the store, or gRPC itself for a size limit)
_ALWAYS_DEFINITE = (Unauthenticated, PermissionDenied, Overloaded)
_CLASS_OF = {code: cls for cls, code in _CODE_OF.items()}
_CODE_OF[CoordinatorRefused] = grpc.StatusCode.FAILED_PRECONDITION  # kv-error tells it apart
DEFINITE_KEY = "kv-definite"
ERROR_KEY = "kv-error"


def to_status(error: KVError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    code = _CODE_OF.get(type(error), grpc.StatusCode.INTERNAL)
    metadata = ((DEFINITE_KEY, "1" if error.definite else "0"), (ERROR_KEY, error.code))
    return code, error.message, metadata


_TLS_SIGNS = ("handshake", "ssl", "certificate", "verification", "socket closed")


def never_connected(error: grpc.aio.AioRpcError) -> bool:
    """True when gRPC reports it could not open a connection at all."""
    details = (error.details() or "").lower()
    return error.code() == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in details or "connection refused" in details
    )


def from_rpc_error(error: grpc.aio.AioRpcError, target: str) -> KVError:
    metadata: dict[str, str] = {}
    for item in error.trailing_metadata() or ():
        key, value = cast("tuple[str, str | bytes]", item)
        if isinstance(value, str):
            metadata[key] = value
    cls = _CLASS_OF.get(error.code())
    named = _CLASS_OF_NAME.get(metadata.get(ERROR_KEY, ""))
    if named is not None and _CODE_OF.get(named) == error.code():
        cls = named  # a subclass sharing its parent's status code
    if cls is not None and DEFINITE_KEY in metadata:
        return cls(error.details() or cls.code, definite=metadata[DEFINITE_KEY] == "1")
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RequestTimeout(f"no answer from {target} before the deadline", definite=False)
    if cls is InvalidArgument:
        return InvalidArgument(error.details() or "invalid argument")
    if cls in _ALWAYS_DEFINITE:
        assert cls is not None
        return cls(f"{target}: {error.details() or cls.code}", definite=True)
    definite = never_connected(error)
    details = error.details() or ""
    if definite and any(w in details.lower() for w in _TLS_SIGNS):
        return CoordinatorUnreachable(
            f"{target}: the TLS handshake failed: the node refused this client's certificate "
            f"or this client does not trust the node's (same CA? TLS on at both ends?): "
            f"{details.rsplit(': ', 1)[-1]}",
            definite=True,
        )
    return CoordinatorUnreachable(
        f"{target}: {error.code().name.lower()}: {error.details()}", definite=definite
    )


_CLASS_OF_NAME: dict[str, type[KVError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unavailable,
        RequestTimeout,
        QuorumFailed,
        CoordinatorUnreachable,
        CoordinatorRefused,
        Unauthenticated,
        PermissionDenied,
        Overloaded,
    )
}


def to_call_error(error: KVError) -> pb.CallError:
    return pb.CallError(code=error.code, message=error.message, definite=error.definite)


def from_call_error(error: pb.CallError, target: str) -> KVError:
    cls = _CLASS_OF_NAME.get(error.code)
    if cls is None:
        return KVError(f"{target}: {error.code}: {error.message}", definite=False)
    return cls(error.message or cls.code, definite=error.definite)
