"""One client for a node's Admin gRPC service (Status, Repair, ReadLocal, SetFaults, Echo).

The harness, the cluster tools, the benchmarks and the cluster tests speak to a node's
Admin service only through here: ``AdminClient`` (asyncio) or its blocking twin
``SyncAdminClient``, the same five methods with the same parameters.

Rules:
- Who it speaks as: the config's client (``[tls] client``, which holds the admin role;
  plaintext if the cluster turned TLS off), via ``Dialer.for_client``, unless given a
  ``Dialer``: a ``LocalCluster``'s (it made the missing certificates, and ``dial_as``
  may have changed the identity), or one made once so that a benchmark times handshakes
  and not certificate files. A node dialled by id must present that node's certificate.
  ``at(address)`` dials an address that is no configured node (plaintext by default:
  the benchmarks' bare echo server).
- Timeouts: every call has one (``timeout``, seconds; each method's default is its
  ``*_TIMEOUT_S`` below, and callers with a reason pass their own). No call waits for
  a connection unless asked: ``wait_for_ready=True`` waits out a channel's reconnect
  backoff (a node restarted moments ago) until the timeout instead of failing at once.
- What it raises: nothing is mapped. ``AdminClient`` raises ``grpc.aio.AioRpcError``,
  ``SyncAdminClient`` a ``grpc.RpcError`` that is also a ``grpc.Call``, with the code
  and details the node (or gRPC) gave. A node that is down is UNAVAILABLE at once, or
  DEADLINE_EXCEEDED when the timeout ends if the call was made ``wait_for_ready``.
- One channel per client, opened on first use (for ``AdminClient``, inside the running
  loop) and closed by ``close()`` or the context manager's exit; concurrent calls may
  share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import grpc
import msgpack

from kvstore.config import ClusterConfig
from kvstore.core import epoch_wire
from kvstore.core.epochs import Accept, Learn, Prepare, Reply, Request
from kvstore.net.channel import PLAINTEXT, Dialer
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from kvstore.pb.kvstore_pb2_grpc import AdminAsyncStub

STATUS_TIMEOUT_S = 1.0
REPAIR_TIMEOUT_S = 60.0
READ_LOCAL_TIMEOUT_S = 5.0
SET_FAULTS_TIMEOUT_S = 2.0
ECHO_TIMEOUT_S = 5.0


class _Target:
    """Where the client dials and as whom."""

    address: str
    node_id: str | None
    dialer: Dialer

    def __init__(self, config: ClusterConfig, node_id: str, *, dialer: Dialer | None = None):
        """Node ``node_id`` of ``config``, as the config's client unless ``dialer``."""
        self._target(
            config.node(node_id).address,
            node_id,
            dialer if dialer is not None else Dialer.for_client(config),
        )

    @classmethod
    def at(cls, address: str, *, dialer: Dialer = PLAINTEXT, node_id: str | None = None) -> Self:
        """Whatever serves the Admin service at ``address`` (no config needed)."""
        client = cls.__new__(cls)
        client._target(address, node_id, dialer)
        return client

    def _target(self, address: str, node_id: str | None, dialer: Dialer) -> None:
        self.address, self.node_id, self.dialer = address, node_id, dialer

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.node_id or '?'} at {self.address})"


class AdminClient(_Target):
    """The Admin service of one node, over ``grpc.aio``."""

    _channel: grpc.aio.Channel | None = None
    _stub: AdminAsyncStub | None = None

    def _admin(self) -> AdminAsyncStub:
        if self._stub is None:
            self._channel = self.dialer.aio(self.address, self.node_id)
            self._stub = pb_grpc.AdminStub(self._channel)
        return self._stub

    async def status(
        self, *, timeout: float = STATUS_TIMEOUT_S, wait_for_ready: bool = False
    ) -> pb.StatusReply:
        """The node's view: its id, peers, counters, pending hints, TLS and faults."""
        return await self._admin().Status(
            pb.Empty(), timeout=timeout, wait_for_ready=wait_for_ready
        )

    async def repair(
        self,
        peers: Iterable[str] = (),
        *,
        timeout: float = REPAIR_TIMEOUT_S,
        wait_for_ready: bool = False,
    ) -> pb.RepairReply:
        """One anti-entropy round from this node, with ``peers`` (empty: all sharing a
        range); returns when it is done."""
        return await self._admin().Repair(
            pb.RepairRequest(peers=list(peers)), timeout=timeout, wait_for_ready=wait_for_ready
        )

    async def read_local(
        self, key: bytes, *, timeout: float = READ_LOCAL_TIMEOUT_S, wait_for_ready: bool = False
    ) -> pb.LocalReadReply:
        """This node's own stored version of ``key`` (no quorum, not its hints)."""
        return await self._admin().ReadLocal(
            pb.LocalReadRequest(key=key), timeout=timeout, wait_for_ready=wait_for_ready
        )

    async def set_faults(
        self,
        faults: pb.Faults,
        *,
        timeout: float = SET_FAULTS_TIMEOUT_S,
        wait_for_ready: bool = False,
    ) -> pb.Faults:
        """Replace the node's injected faults, whole (``pb.Faults()`` heals it); returns
        the faults now in place. Only a node started with ``--enable-faults`` accepts."""
        return await self._admin().SetFaults(faults, timeout=timeout, wait_for_ready=wait_for_ready)

    async def echo(
        self, payload: bytes = b"", *, timeout: float = ECHO_TIMEOUT_S, wait_for_ready: bool = False
    ) -> bytes:
        """``payload`` back: any authenticated caller may, so it measures the wire."""
        reply = await self._admin().Echo(
            pb.EchoMessage(payload=payload), timeout=timeout, wait_for_ready=wait_for_ready
        )
        return reply.payload

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(None)

    async def __aenter__(self) -> Self:
        self._admin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SyncAdminClient(_Target):
    """``AdminClient``'s blocking twin, over a ``grpc`` sync channel."""

    _channel: grpc.Channel | None = None
    _stub: pb_grpc.AdminStub | None = None

    def _admin(self) -> pb_grpc.AdminStub:
        if self._stub is None:
            self._channel = self.dialer.sync(self.address, self.node_id)
            self._stub = pb_grpc.AdminStub(self._channel)
        return self._stub

    def status(
        self, *, timeout: float = STATUS_TIMEOUT_S, wait_for_ready: bool = False
    ) -> pb.StatusReply:
        return self._admin().Status(pb.Empty(), timeout=timeout, wait_for_ready=wait_for_ready)

    def range_stats(
        self, ranges: list[tuple[int, int]], *, timeout: float = 120.0
    ) -> pb.RangeStatsReply:
        """Keys, tombstones and bytes the node stores in each inclusive token range."""
        request = pb.RangeStatsRequest(
            ranges=[pb.TokenRange(first=first, last=last) for first, last in ranges]
        )
        return self._admin().RangeStats(request, timeout=timeout)

    def pull(
        self,
        source: str,
        ranges: list[tuple[int, int]],
        after: bytes | None = None,
        *,
        rate_keys_s: float = 0.0,
        budget_s: float = 5.0,
    ) -> pb.PullReply:
        """Make this node stream ``ranges`` from ``source`` for about ``budget_s``."""
        request = pb.PullRequest(
            source=source,
            ranges=[pb.TokenRange(first=first, last=last) for first, last in ranges],
            rate_keys_s=rate_keys_s,
            budget_s=budget_s,
        )
        if after is not None:
            request.after = after
        return self._admin().Pull(request, timeout=budget_s + 60.0)

    def clean_up(self, *, timeout: float = 600.0) -> pb.CleanUpReply:
        """Make this node drop the keys its ring no longer places on it."""
        return self._admin().CleanUp(pb.Empty(), timeout=timeout)

    def epoch(self, message: Request, *, timeout: float = 5.0) -> Reply:
        """One Paxos message on the ring epochs, and the node's (validated) answer."""
        payload = msgpack.packb(epoch_wire.encode_message(message))
        answer = self._admin().Epoch(pb.EpochFrame(payload=payload), timeout=timeout)
        raw = msgpack.unpackb(answer.payload, raw=False)
        reply = epoch_wire.decode_message(raw, f"{self.node_id or self.address}'s answer")
        if isinstance(reply, (Prepare, Accept, Learn)):
            raise epoch_wire.WireError(f"{self.node_id}: answered with a request")
        return reply

    def repair(
        self,
        peers: Iterable[str] = (),
        *,
        timeout: float = REPAIR_TIMEOUT_S,
        wait_for_ready: bool = False,
    ) -> pb.RepairReply:
        return self._admin().Repair(
            pb.RepairRequest(peers=list(peers)), timeout=timeout, wait_for_ready=wait_for_ready
        )

    def read_local(
        self, key: bytes, *, timeout: float = READ_LOCAL_TIMEOUT_S, wait_for_ready: bool = False
    ) -> pb.LocalReadReply:
        return self._admin().ReadLocal(
            pb.LocalReadRequest(key=key), timeout=timeout, wait_for_ready=wait_for_ready
        )

    def set_faults(
        self,
        faults: pb.Faults,
        *,
        timeout: float = SET_FAULTS_TIMEOUT_S,
        wait_for_ready: bool = False,
    ) -> pb.Faults:
        return self._admin().SetFaults(faults, timeout=timeout, wait_for_ready=wait_for_ready)

    def echo(
        self, payload: bytes = b"", *, timeout: float = ECHO_TIMEOUT_S, wait_for_ready: bool = False
    ) -> bytes:
        reply = self._admin().Echo(
            pb.EchoMessage(payload=payload), timeout=timeout, wait_for_ready=wait_for_ready
        )
        return reply.payload

    def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def __enter__(self) -> Self:
        self._admin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
