"""Run one node: open its engine, serve gRPC on its address, stop cleanly on a signal.

Rules: SIGTERM and SIGINT stop the node gracefully (in-flight calls get a grace period,
the engine flushes and closes); SIGKILL is the crash the tests use. The event loop is
uvloop where it is installed. The node logs one line when it is serving, which is the
line ``kvstore cluster up`` and the tests wait for (besides a successful status call).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

import grpc

from kvstore.config import ClusterConfig
from kvstore.net.channel import SERVER_OPTIONS
from kvstore.net.servicers import AdminServicer, KVServicer, ReplicaServicer
from kvstore.node.antientropy import AntiEntropy
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.storage import open_engine_async

log = logging.getLogger("kvstore.node")


async def serve(config: ClusterConfig, node_id: str, *, clock_offset_us: int = 0) -> None:
    me = config.node(node_id)
    engine = await open_engine_async(config.engine, Path(me.data_dir) / "kv.sqlite3")
    node = Node(config, node_id, engine, clock_offset_us=clock_offset_us)
    anti_entropy = AntiEntropy(node)  # registers its replica ops and loops on the node
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_KVServicer_to_server(KVServicer(node), server)
    pb_grpc.add_ReplicaServicer_to_server(ReplicaServicer(node), server)
    pb_grpc.add_AdminServicer_to_server(AdminServicer(node, anti_entropy), server)
    bound = server.add_insecure_port(me.address)
    if bound == 0:
        await engine.close()
        raise OSError(f"node {node_id}: cannot listen on {me.address} (port in use?)")
    await server.start()
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("node %s serving on %s (engine=%s)", node_id, me.address, config.engine)
    try:
        await stop.wait()
    finally:
        log.info("node %s stopping", node_id)
        # Close our outgoing links first: peers' servers then see their streams end
        # instead of waiting out their grace period on them.
        await node.close_links()
        await server.stop(grace=0.5)
        await node.close()
        log.info("node %s stopped", node_id)


def run(config: ClusterConfig, node_id: str, *, clock_offset_us: int = 0) -> None:
    if config.engine == "sqlite":
        config.node(node_id).data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Full collections stop every thread (the loop and the engine's) for tens of ms
    # once the heap is large; the startup objects are long-lived, so freeze them, and
    # collect the young generation less eagerly under a steady stream of requests.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    try:
        import uvloop

        uvloop.run(serve(config, node_id, clock_offset_us=clock_offset_us))
    except ImportError:
        asyncio.run(serve(config, node_id, clock_offset_us=clock_offset_us))
