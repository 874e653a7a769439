"""Which of gRPC's two I/O stacks a node's process runs on.

grpcio 1.85 carries two: EventEngine (its default) and the older iomgr. On EventEngine,
a frame that arrives is read by one of EventEngine's threads, handed to grpc.aio's
poller thread, and only then to the event loop: two thread hops per frame on top of the
loop's own wake-up. On iomgr, grpc.aio's poller thread reads the socket itself. Five
nodes on 2 cores (``bench/node_cost.py``; ``bench/README.md``, "gRPC's I/O stack"): on
iomgr the nodes do a third to a half fewer context switches per call (16.2 -> 9.3 per
quorum get, 25.5 -> 16.5 per quorum put) and spend 15-20% less CPU per quorum call.

Rules:
- grpc reads ``GRPC_EXPERIMENTS`` once, when it is first imported, so the setting has
  to be in a process's environment when it starts. ``LocalCluster`` starts its node
  processes with it, and ``kvstore node`` started without it replaces itself once (an
  exec: same PID, same arguments) with a process that has it, before it opens anything.
- A ``GRPC_EXPERIMENTS`` that is already set, even to an empty string, belongs to the
  operator and is kept as it is. That is also how a node is run on EventEngine.
- Only node processes get the setting. The client library never changes the
  environment of a program that imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

ENV = "GRPC_EXPERIMENTS"
# All three: the client and server sides of every peer link, and any other endpoint
# (with only the first two turned off, a node did 9.0 switches a get instead of 8.5).
NODE_EXPERIMENTS = ",".join(
    ("-event_engine_client", "-event_engine_listener", "-event_engine_for_all_other_endpoints")
)


def chosen(environ: Mapping[str, str]) -> bool:
    """Whether the environment already says which I/O stack grpc runs on."""
    return ENV in environ


def node_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` as a node process should start with it."""
    env = dict(environ)
    env.setdefault(ENV, NODE_EXPERIMENTS)
    return env
