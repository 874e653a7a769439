"""One contract, two transports: gRPC peer links and the simulated network.

Each world gives node n1's link to n2 (a real ``Node`` serves the other end with
``handle_frame``), a way to stop n2 and a way to cut the link; every test runs in both.
The rules are ``kvstore.net.link``'s: a reply, or ``PeerError`` with ``sent`` telling
the truth, always by the request's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import grpc
import pytest

from kvstore import config as config_mod
from kvstore.cluster.local import free_ports
from kvstore.config import ClusterConfig
from kvstore.core.epochs import Learn, Learned, RingRecord
from kvstore.core.version import Record, Timestamp
from kvstore.net import replica_codec
from kvstore.net.link import Link, PeerError, StaleEpoch
from kvstore.node.runtime import Node
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.server.servicers import Gate, ReplicaServicer
from kvstore.sim import loop as sim_loop
from kvstore.sim.cluster import SimCluster
from kvstore.storage.memory import MemoryEngine

MAX_PENDING = 4


def _config(addresses: list[str]) -> ClusterConfig:
    return config_mod.parse(
        {
            "cluster": {"name": "contract", "n": 3, "max_peer_pending": MAX_PENDING},
            "tls": "off",
            "nodes": [
                {"id": f"n{i}", "address": a, "data_dir": f"d{i}"}
                for i, a in enumerate(addresses, 1)
            ],
        },
        base=Path("/contract"),
    )


class World(Protocol):
    link: Link

    async def stop_peer(self) -> None: ...

    async def start_peer(self) -> None: ...

    def cut(self) -> None: ...


class GrpcWorld:
    """n1 and n2 in this process, n2 served by a real gRPC server on loopback."""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls) -> AsyncIterator[GrpcWorld]:
        cfg = _config([f"127.0.0.1:{p}" for p in free_ports(3)])
        a = Node(cfg, "n1", MemoryEngine())
        b = Node(cfg, "n2", MemoryEngine())
        server = grpc.aio.server()
        pb_grpc.add_ReplicaServicer_to_server(ReplicaServicer(b, Gate(secure=False)), server)
        server.add_insecure_port(cfg.node("n2").address)
        await server.start()
        world = cls()
        world.a, world.b, world.link = a, b, a.links["n2"]
        world.address = cfg.node("n2").address
        world.server = server
        try:
            yield world
        finally:
            await a.close()
            await world.server.stop(None)
            await b.close()

    a: Node
    b: Node
    address: str
    server: grpc.aio.Server
    link: Link

    async def stop_peer(self) -> None:
        await self.server.stop(None)
        await asyncio.sleep(0.3)  # the link sees its stream end

    async def start_peer(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_ReplicaServicer_to_server(ReplicaServicer(self.b, Gate(secure=False)), server)
        server.add_insecure_port(self.address)
        await server.start()
        self.server = server

    def cut(self) -> None:
        self.a.faults.isolated = frozenset({"n2"})


class SimWorld:
    """n1 and n2 on the simulated network (virtual time)."""

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls) -> AsyncIterator[SimWorld]:
        cluster = SimCluster(_config(["sim:1", "sim:2", "sim:3"]), random.Random(1))
        cluster.start()
        await asyncio.sleep(0.5)
        world = cls()
        world.cluster = cluster
        node = cluster.nodes["n1"]
        assert node is not None
        world.link = node.links["n2"]
        yield world

    cluster: SimCluster
    link: Link

    async def stop_peer(self) -> None:
        self.cluster.kill("n2")
        await asyncio.sleep(0.3)

    async def start_peer(self) -> None:
        self.cluster.start_node("n2")

    def cut(self) -> None:
        self.cluster.network.link_faults("n1", "n2").cut = True


Body = Callable[[World], Coroutine[Any, Any, None]]


def run_in(kind: str, body: Body) -> None:
    opener = GrpcWorld.open if kind == "grpc" else SimWorld.open

    async def main() -> None:
        async with opener() as world:
            await body(world)

    if kind == "grpc":
        asyncio.run(main())
    else:
        sim_loop.run(main)


WORLDS = ["grpc", "sim"]


@pytest.mark.parametrize("kind", WORLDS)
def test_a_ping_is_answered_by_the_peer(kind: str) -> None:
    async def body(world: World) -> None:
        reply = await world.link.request(["p", "n1"], 2.0)
        assert reply[0] == "n2" and isinstance(reply[1], int)

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_a_write_then_a_read_round_trips_the_record(kind: str) -> None:
    async def body(world: World) -> None:
        loop = asyncio.get_running_loop()
        record = Record(b"k", b"v", Timestamp(int(loop.time() * 1e6), 0, "n1"))
        epoch = _requester(world).epoch
        assert await world.link.request(replica_codec.write_args(record, None, epoch), 2.0)
        raw = await world.link.request(replica_codec.read_args(b"k", None, epoch), 2.0)
        assert raw == replica_codec.encode_record(record)

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_served_gets_the_replica_service_time_before_the_reply(kind: str) -> None:
    async def body(world: World) -> None:
        loop = asyncio.get_running_loop()
        record = Record(b"k", b"v", Timestamp(int(loop.time() * 1e6), 0, "n1"))
        calls: list[tuple[float, bool]] = []
        began = loop.time()
        future = world.link.request(
            replica_codec.write_args(record, None, _requester(world).epoch),
            2.0,
            lambda s: calls.append((s, future.done())),
        )
        assert await future is True
        rtt = loop.time() - began
        assert len(calls) == 1, calls
        service, resolved_already = calls[0]
        assert not resolved_already  # a metric taken before anyone reads the reply
        assert 0 <= service <= rtt + 1e-6, (service, rtt)
        failed: list[float] = []
        bad = world.link.request(["nonsense-op"], 2.0, failed.append)
        with pytest.raises(PeerError):
            await bad
        assert failed == []  # only successful replies are timed

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_a_request_to_a_stopped_peer_fails_as_not_sent(kind: str) -> None:
    async def body(world: World) -> None:
        await world.link.request(["p", "n1"], 2.0)
        await world.stop_peer()
        with pytest.raises(PeerError) as caught:
            await world.link.request(["p", "n1"], 2.0)
        assert caught.value.sent is False

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_a_peer_back_after_failed_dials_is_reached_once_the_backoff_passes(kind: str) -> None:
    # Six failed dials grow any backoff to its ceiling (the link's is 1 s); a transport
    # that carried gRPC's own reconnect backoff over would still be waiting on it here.
    async def body(world: World) -> None:
        await world.stop_peer()
        for _ in range(6):
            with pytest.raises(PeerError):
                await world.link.request(["p", "n1"], 2.0)
            await asyncio.sleep(1.05)
        await world.start_peer()
        assert await world.link.request(["p", "n1"], 2.0) is not None

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_a_lost_request_ends_at_its_deadline_as_sent(kind: str) -> None:
    async def body(world: World) -> None:
        await world.link.request(["p", "n1"], 2.0)
        world.cut()
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(PeerError) as caught:
            await world.link.request(["p", "n1"], 0.4)
        assert caught.value.sent is True
        assert loop.time() - began >= 0.39

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_requests_beyond_max_pending_are_refused_at_once_not_sent(kind: str) -> None:
    async def body(world: World) -> None:
        await world.link.request(["p", "n1"], 2.0)
        world.cut()
        waiting = [world.link.request(["p", "n1"], 0.5) for _ in range(MAX_PENDING)]
        refused = world.link.request(["p", "n1"], 0.5)
        assert refused.done()
        error = refused.exception()
        assert isinstance(error, PeerError) and error.sent is False
        assert world.link.refused_full == 1
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, PeerError) and r.sent for r in results)

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_closing_the_link_fails_what_it_had(kind: str) -> None:
    async def body(world: World) -> None:
        await world.link.request(["p", "n1"], 2.0)
        world.cut()
        waiting = world.link.request(["p", "n1"], 5.0)
        await asyncio.sleep(0.05)
        await world.link.close()
        with pytest.raises(PeerError):
            await asyncio.wait_for(waiting, 1.0)
        after = world.link.request(["p", "n1"], 1.0)
        with pytest.raises(PeerError) as caught:
            await after
        assert caught.value.sent is False

    run_in(kind, body)


@pytest.mark.parametrize("kind", WORLDS)
def test_a_request_made_while_the_link_reconnects_is_answered(kind: str) -> None:
    # The peer refuses the stream once (gone), then is back: a request queued while the
    # link dials again must go out on the new stream, not into the dead one.
    async def body(world: World) -> None:
        await world.link.request(["p", "n1"], 2.0)
        await world.stop_peer()
        await world.start_peer()
        for _ in range(5):
            answer = await world.link.request(["p", "n1"], 2.0)
            assert answer is not None

    run_in(kind, body)


def _peer_node(world: World) -> Node:
    node = world.b if isinstance(world, GrpcWorld) else world.cluster.nodes["n2"]  # type: ignore[attr-defined]
    assert node is not None
    return node


def _requester(world: World) -> Node:
    node = world.a if isinstance(world, GrpcWorld) else world.cluster.nodes["n1"]  # type: ignore[attr-defined]
    assert node is not None
    return node


@pytest.mark.parametrize("kind", WORLDS)
@pytest.mark.parametrize("op", ["write", "read"])
def test_a_replica_on_a_newer_epoch_refuses_a_request_and_teaches_it(kind: str, op: str) -> None:
    """A read or write placed with an older epoch than the replica's is refused unserved
    (``StaleEpoch``, not sent: nothing was done), and the refusal, like every reply,
    names the replica's epoch, so the requester learns the newer ring from that peer.
    (The gRPC world runs no heartbeats: only the refusal can have told n1.)"""

    async def body(world: World) -> None:
        a, b = _requester(world), _peer_node(world)
        assert a.epochs is not None and b.epochs is not None
        old = a.epochs.chosen
        newer = RingRecord(old.epoch + 1, old.members, old.n, old.vnodes)
        assert isinstance(await b.epoch_message(Learn(newer)), Learned)
        loop = asyncio.get_running_loop()
        record = Record(b"k", b"v", Timestamp(int(loop.time() * 1e6), 0, "n1"))
        if op == "write":
            body_ = replica_codec.write_args(record, None, old.epoch)
        else:
            body_ = replica_codec.read_args(b"k", None, old.epoch)
        with pytest.raises(StaleEpoch) as refused:
            await world.link.request(body_, 2.0)
        assert refused.value.epoch == newer.epoch and refused.value.peer == "n2"
        assert refused.value.sent is False
        assert await b.local_version(b"k") is None  # unserved
        for _ in range(50):
            if a.epoch == newer.epoch:
                break
            await asyncio.sleep(0.02)
        assert a.epoch == newer.epoch and a.epochs.chosen == newer
        # placed with the replica's epoch (or a newer one), the same request is served
        if op == "write":
            assert await world.link.request(
                replica_codec.write_args(record, None, newer.epoch), 2.0
            )
            assert await b.local_version(b"k") == record
            ahead = replica_codec.write_args(record, None, newer.epoch + 5)
            assert await world.link.request(ahead, 2.0) is False  # served: already held
        else:
            assert (
                await world.link.request(replica_codec.read_args(b"k", None, newer.epoch), 2.0)
                is None
            )

    run_in(kind, body)


def test_a_ping_from_a_node_on_a_newer_epoch_teaches_the_replica() -> None:
    """A heartbeat names its sender's epoch; a replica behind learns the ring from the
    sender (simulated world only: in the gRPC world n1 serves nothing to learn from)."""

    async def body(world: World) -> None:
        a, b = _requester(world), _peer_node(world)
        assert a.epochs is not None
        old = a.epochs.chosen
        newer = RingRecord(old.epoch + 1, old.members, old.n, old.vnodes)
        await a.epoch_message(Learn(newer))
        await world.link.request(["p", "n1", newer.epoch], 2.0)
        # an epoch.get round trip, well inside a heartbeat interval (b's own heartbeat
        # would teach it too, later)
        await asyncio.sleep(0.01)
        assert b.epoch == newer.epoch

    run_in("sim", body)
