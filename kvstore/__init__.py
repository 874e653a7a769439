"""kvstore: a Dynamo-style tunable-quorum key-value store, and a checker for what it keeps.

from kvstore import Client, SyncClient
async with Client.from_config("cluster.toml") as c:
    await c.put("k", "v", w="quorum")
    await c.get("k", r="one")
"""

from kvstore.client import Client, GetResult, PutResult, ReplicaInfo, SyncClient
from kvstore.errors import (
    ConfigError,
    CoordinatorUnreachable,
    InvalidArgument,
    KVError,
    QuorumFailed,
    RequestTimeout,
    Unavailable,
)

__all__ = [
    "Client",
    "ConfigError",
    "CoordinatorUnreachable",
    "GetResult",
    "InvalidArgument",
    "KVError",
    "PutResult",
    "QuorumFailed",
    "ReplicaInfo",
    "RequestTimeout",
    "SyncClient",
    "Unavailable",
]
