"""kvstore: a Dynamo-style tunable-quorum key-value store, and a checker for what it keeps.

from kvstore import Client, SyncClient
async with Client.from_config("cluster.toml") as c:
    await c.put("k", "v", w="quorum")
    await c.get("k", r="one")
"""

from kvstore.client import Client, GetResult, PutResult, ReplicaInfo, SyncClient
from kvstore.errors import (
    ConfigError,
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
from kvstore.security.tls import TLSFiles

__all__ = [
    "Client",
    "ConfigError",
    "CoordinatorRefused",
    "CoordinatorUnreachable",
    "GetResult",
    "InvalidArgument",
    "KVError",
    "Overloaded",
    "PermissionDenied",
    "PutResult",
    "QuorumFailed",
    "ReplicaInfo",
    "RequestTimeout",
    "SyncClient",
    "TLSFiles",
    "Unauthenticated",
    "Unavailable",
]
