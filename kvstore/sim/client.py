"""A client of the simulated cluster: the real ``Client``, with the wire swapped.

Everything a caller sees is the production client's (option checks, coordinator choice,
the Overloaded backoff, error classes and their definiteness); only ``_send`` differs:
instead of a gRPC call it runs the server's own ``kv_calls`` on the node, through
``SimCluster.call`` (latency both ways, a crash or a pause as the network shows them).
"""

from __future__ import annotations

import random
from typing import Literal

from kvstore.client.aio import Client
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2 as pb
from kvstore.security.identity import Identity
from kvstore.server.kv_calls import get_reply, put_reply
from kvstore.sim.cluster import SimCluster

CALLER = Identity("sim-client", "write")


class SimClient(Client):
    def __init__(
        self, cluster: SimCluster, nodes: list[str], *, timeout: float, rng: random.Random
    ) -> None:
        cfg = cluster.config
        super().__init__(
            [f"sim://{node}" for node in nodes],
            node_ids=nodes if len(nodes) == len(cfg.node_ids) else None,
            n=cfg.n,
            vnodes=cfg.vnodes,
            max_key_bytes=cfg.max_key_bytes,
            max_value_bytes=cfg.max_value_bytes,
            timeout=timeout,
            tls=None,
        )
        self.cluster = cluster
        self._nodes_by_address = {f"sim://{node}": node for node in nodes}
        self._rng = rng

    async def _send(
        self,
        node: str,
        method: Literal["Put", "Get", "Delete"],
        request: pb.PutRequest | pb.GetRequest | pb.DeleteRequest,
        deadline: float,
    ) -> pb.PutReply | pb.GetReply:
        node_id = self._nodes_by_address.get(node, node)

        async def work(coordinator: Node) -> pb.PutReply | pb.GetReply:
            if isinstance(request, pb.GetRequest):
                return await get_reply(coordinator, CALLER, request)
            value = request.value if isinstance(request, pb.PutRequest) else None
            return await put_reply(coordinator, CALLER, request.key, value, request.options)

        return await self.cluster.call(node_id, work, deadline)
