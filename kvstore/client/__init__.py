"""The Python client: ``Client`` (asyncio) and ``SyncClient`` (blocking)."""

from kvstore.client.aio import Client, GetResult, PutResult, ReplicaInfo
from kvstore.client.sync import SyncClient

__all__ = ["Client", "GetResult", "PutResult", "ReplicaInfo", "SyncClient"]
