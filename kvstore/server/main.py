"""Run one node: open its engine, serve gRPC on its address, stop cleanly on a signal.

Rules: SIGTERM and SIGINT stop the node gracefully (in-flight calls get a grace period,
the engine flushes and closes); SIGKILL is the crash the tests use. The event loop is
uvloop where it is installed. The node logs one line when it is serving, which is the
line ``kvstore cluster up`` and the tests wait for (besides a successful status call).

The node serves mutual TLS with its own certificate (checked at start: a wrong file
stops it with one line naming the file) unless the config says ``tls = "off"``, which
is logged as a warning at start. Its data dir is private (0700) and locked: a second
process on the same dir fails at once. Faults exist only with ``enable_faults``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

import grpc

from kvstore.config import ClusterConfig
from kvstore.errors import ConfigError
from kvstore.net.channel import Dialer, message_limit, server_options
from kvstore.node.antientropy import AntiEntropy
from kvstore.node.metrics import NodeMetrics
from kvstore.node.ring_store import FileRingStore
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.security.tls import node_files, server_credentials
from kvstore.server.servicers import AdminServicer, Gate, KVServicer, ReplicaServicer
from kvstore.storage import open_engine_async
from kvstore.storage.lock import DataDirLock, prepare_data_dir

log = logging.getLogger("kvstore.node")


def _credentials(config: ClusterConfig, node_id: str) -> grpc.ServerCredentials | None:
    files = node_files(config, node_id)
    if files is None:
        log.warning(
            'TLS IS OFF (tls = "off" in %s): node %s serves PLAINTEXT and lets ANY caller '
            "read, write, repair and speak as a peer; use it only on a trusted machine",
            config.source or "the config",
            node_id,
        )
        return None
    identity = files.check()
    if identity.kind != "node" or identity.name != node_id:
        raise ConfigError(f"{files.cert}: names {identity}, not node {node_id!r}")
    return server_credentials(files)


async def serve(
    config: ClusterConfig,
    node_id: str,
    *,
    clock_offset_us: int = 0,
    enable_faults: bool = False,
    join: bool = False,
) -> None:
    me = config.node(node_id)
    credentials = _credentials(config, node_id)
    dialer = Dialer.for_node(config, node_id)
    if enable_faults:
        log.warning("node %s: fault injection is ENABLED (a test node)", node_id)
    engine = await open_engine_async(
        config.engine, Path(me.data_dir) / "kv.sqlite3", cache_bytes=config.read_cache_mb << 20
    )
    node = Node(
        config,
        node_id,
        engine,
        clock_offset_us=clock_offset_us,
        enable_faults=enable_faults,
        dialer=dialer,
        ring_store=FileRingStore(Path(me.data_dir) / "ring.json"),
        join=join,
    )
    anti_entropy = AntiEntropy(node)  # registers its replica ops and loops on the node
    if me.metrics is not None:
        node.metrics = NodeMetrics(node)
        node.metrics.serve(me.metrics)
    limit = message_limit(config.max_key_bytes, config.max_value_bytes)
    server = grpc.aio.server(options=server_options(limit))
    gate = Gate(secure=credentials is not None)
    pb_grpc.add_KVServicer_to_server(KVServicer(node, gate), server)
    pb_grpc.add_ReplicaServicer_to_server(ReplicaServicer(node, gate), server)
    pb_grpc.add_AdminServicer_to_server(AdminServicer(node, gate, anti_entropy), server)
    if credentials is None:
        bound = server.add_insecure_port(me.address)
    else:
        bound = server.add_secure_port(me.address, credentials)
    if bound == 0:
        await engine.close()
        raise OSError(f"node {node_id}: cannot listen on {me.address} (port in use?)")
    await server.start()
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "node %s serving on %s (engine=%s, %s)",
        node_id,
        me.address,
        config.engine,
        "mutual TLS" if credentials is not None else "PLAINTEXT",
    )
    try:
        await stop.wait()
    finally:
        log.info("node %s stopping", node_id)
        # Close our outgoing links first: peers' servers then see their streams end
        # instead of waiting out their grace period on them.
        await node.close_links()
        await server.stop(grace=0.5)
        await node.close()
        if node.metrics is not None:
            node.metrics.close()
        log.info("node %s stopped", node_id)


def run(
    config: ClusterConfig,
    node_id: str,
    *,
    clock_offset_us: int = 0,
    enable_faults: bool = False,
    join: bool = False,
) -> None:
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
    data_dir = config.node(node_id).data_dir
    prepare_data_dir(data_dir)
    with DataDirLock(data_dir):
        main = serve(
            config,
            node_id,
            clock_offset_us=clock_offset_us,
            enable_faults=enable_faults,
            join=join,
        )
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)
