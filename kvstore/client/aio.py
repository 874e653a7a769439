"""The asyncio client: per-call consistency, coordinator failover, typed errors.

Rules:
- Every call may set its own consistency (``r``/``w`` as 1..N or a level name, or a
  preset ``consistency``), ``sloppy``, ``read_repair`` and ``timeout`` (seconds); unset
  means the cluster default, decided by the coordinator.
- What the client can check before sending (key/value types and sizes, level names,
  R/W against N when it knows N) it checks, raising ``InvalidArgument``: nothing is sent.
- Calls travel on a session by default: one long-lived stream per coordinator that
  multiplexes every call in flight (``kvstore.client.session``), so many calls share one
  gRPC message; ``transport="unary"`` makes each call its own unary RPC instead. Both
  give the same results and the same error classes with the same definiteness.
- Coordinator choice is token-aware when the client knows the ring (from a config): a
  key's primaries first, so the coordinator usually is a replica and saves a hop. A
  coordinator that cannot be connected to is skipped for a moment and the next one is
  tried; that is safe because the request never left. So is a coordinator that refused
  the call before doing anything (``CoordinatorRefused``: its clock is off). Any other
  failure is raised as it is (a timeout is indefinite: retrying could apply a write
  twice out of order).
- ``Overloaded`` is definite (the coordinator did nothing), so the client backs off
  (jittered, doubling) and tries again until its deadline, then raises it.
- ``tls`` is the client's identity (a CA, a certificate and its key): mutual TLS, and a
  coordinator known by id must present that node's certificate. ``None`` is plaintext,
  for a cluster that opted out; ``from_config`` takes the config's client certificate.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, cast, overload

import grpc

from kvstore import config as config_mod
from kvstore.client.session import SessionLink
from kvstore.core import consistency
from kvstore.core.keys import as_key, as_value
from kvstore.core.ring import Ring
from kvstore.core.version import Timestamp
from kvstore.errors import (
    CoordinatorRefused,
    CoordinatorUnreachable,
    InvalidArgument,
    KVError,
    Overloaded,
)
from kvstore.net.channel import Dialer, message_limit
from kvstore.net.convert import options_to_pb, ts_from_pb
from kvstore.net.status import from_rpc_error
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.security.tls import TLSFiles, client_files

Level = int | str

MEMO_LIMIT = 4096  # entries in each of a client's memos (call options, ring walks)
# r, w, consistency, sloppy, read_repair, timeout, trace: as the API takes them
_OptionArgs = tuple[
    Level | None, Level | None, str | None, bool | None, str | None, float | None, bool
]
Transport = Literal["session", "unary"]
SKIP_UNREACHABLE_S = 1.0
DEADLINE_MARGIN_S = 0.5
OVERLOAD_BACKOFF_S = (0.005, 0.2)
_FROM_CONFIG: TLSFiles = TLSFiles(Path(), Path(), Path())  # "the config's", a sentinel


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One replica's part in a call (consistency tracing)."""

    node: str
    ok: bool
    fallback: bool = False
    found: bool = False
    tombstone: bool = False
    ts: Timestamp | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class PutResult:
    ts: Timestamp
    coordinator: str
    replicas: tuple[ReplicaInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class GetResult:
    value: bytes | None  # None: absent or deleted
    ts: Timestamp | None  # the winning version (a tombstone's too); None: never written
    coordinator: str
    replicas: tuple[ReplicaInfo, ...] = field(default=())

    @property
    def found(self) -> bool:
        return self.value is not None


class Client:
    """An asyncio client for a kvstore cluster."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        node_ids: Sequence[str] | None = None,
        n: int | None = None,
        vnodes: int = 64,
        max_key_bytes: int = 64 * 1024,
        max_value_bytes: int = 3 << 20,
        timeout: float = 5.0,
        transport: Transport = "session",
        tls: TLSFiles | None = None,
    ) -> None:
        if not addresses:
            raise InvalidArgument("a client needs at least one node address")
        if transport not in ("session", "unary"):
            raise InvalidArgument(f"transport must be 'session' or 'unary', not {transport!r}")
        if node_ids is not None and len(node_ids) != len(addresses):
            raise InvalidArgument("node_ids and addresses must have the same length")
        self.addresses = tuple(addresses)
        self.node_ids = tuple(node_ids) if node_ids is not None else self.addresses
        self.n = n
        self.max_key_bytes = max_key_bytes
        self.max_value_bytes = max_value_bytes
        self.timeout = timeout
        self.transport = transport
        self._ring = Ring(list(node_ids), vnodes) if node_ids is not None else None
        self._address_of = dict(zip(self.node_ids, self.addresses, strict=True))
        self._stubs: dict[str, pb_grpc.KVStub] = {}
        self._sessions: dict[str, SessionLink] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._skip_until: dict[str, float] = {}
        self._rotation = itertools.cycle(range(len(self.addresses)))
        self._dialer = Dialer(tls, message_limit(max_key_bytes, max_value_bytes))
        self._rng = random.Random()  # backoff jitter; the simulator seeds it
        self._options_memo: dict[tuple[tuple[type, object], ...], pb.Options] = {}
        self._walks: dict[bytes, list[str]] = {}  # key -> its coordinators, ring order

    @classmethod
    def from_config(
        cls,
        config: str | Path | config_mod.ClusterConfig,
        *,
        timeout: float | None = None,
        transport: Transport = "session",
        tls: TLSFiles | None = _FROM_CONFIG,
    ) -> Client:
        """A client for the config's cluster, with its ``[tls] client`` certificate unless
        ``tls`` gives other files."""
        cfg = config if isinstance(config, config_mod.ClusterConfig) else config_mod.load(config)
        return cls(
            [node.address for node in cfg.nodes],
            node_ids=cfg.node_ids,
            n=cfg.n,
            vnodes=cfg.vnodes,
            max_key_bytes=cfg.max_key_bytes,
            max_value_bytes=cfg.max_value_bytes,
            timeout=timeout if timeout is not None else cfg.request_timeout_ms / 1000 + 1.0,
            transport=transport,
            tls=client_files(cfg) if tls is _FROM_CONFIG else tls,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        # A copy: closing fails queued calls, whose callers may fail over meanwhile.
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        self._stubs.clear()

    # ------------------------------------------------------------------- the API

    async def put(
        self,
        key: str | bytes,
        value: str | bytes,
        *,
        w: Level | None = None,
        consistency: str | None = None,
        sloppy: bool | None = None,
        timeout: float | None = None,
        trace: bool = False,
    ) -> PutResult:
        """Write ``value`` under ``key``; returns the version written."""
        key_bytes = as_key(key, self.max_key_bytes)
        request = pb.PutRequest(
            key=key_bytes,
            value=as_value(value, self.max_value_bytes),
            options=self._options(None, w, consistency, sloppy, None, timeout, trace),
        )
        reply = cast(pb.PutReply, await self._call(key_bytes, "Put", request, timeout))
        return _put_result(reply)

    async def delete(
        self,
        key: str | bytes,
        *,
        w: Level | None = None,
        consistency: str | None = None,
        sloppy: bool | None = None,
        timeout: float | None = None,
        trace: bool = False,
    ) -> PutResult:
        """Delete ``key`` (writes a tombstone); returns the tombstone's version."""
        key_bytes = as_key(key, self.max_key_bytes)
        request = pb.DeleteRequest(
            key=key_bytes,
            options=self._options(None, w, consistency, sloppy, None, timeout, trace),
        )
        reply = cast(pb.PutReply, await self._call(key_bytes, "Delete", request, timeout))
        return _put_result(reply)

    @overload
    async def get(
        self,
        key: str | bytes,
        *,
        r: Level | None = ...,
        consistency: str | None = ...,
        sloppy: bool | None = ...,
        read_repair: str | None = ...,
        timeout: float | None = ...,
        trace: Literal[False] = ...,
    ) -> bytes | None: ...

    @overload
    async def get(
        self,
        key: str | bytes,
        *,
        r: Level | None = ...,
        consistency: str | None = ...,
        sloppy: bool | None = ...,
        read_repair: str | None = ...,
        timeout: float | None = ...,
        trace: Literal[True],
    ) -> GetResult: ...

    async def get(
        self,
        key: str | bytes,
        *,
        r: Level | None = None,
        consistency: str | None = None,
        sloppy: bool | None = None,
        read_repair: str | None = None,
        timeout: float | None = None,
        trace: bool = False,
    ) -> bytes | GetResult | None:
        """The value of ``key`` (None when absent or deleted).

        With ``trace=True``: a ``GetResult`` with the winning version and what each
        replica answered, so a stale replica is visible.
        """
        key_bytes = as_key(key, self.max_key_bytes)
        request = pb.GetRequest(
            key=key_bytes,
            options=self._options(r, None, consistency, sloppy, read_repair, timeout, trace),
        )
        reply = cast(pb.GetReply, await self._call(key_bytes, "Get", request, timeout))
        if not trace:
            return reply.value if reply.found else None
        return GetResult(
            value=reply.value if reply.found else None,
            ts=ts_from_pb(reply.ts) if reply.HasField("ts") else None,
            coordinator=reply.coordinator,
            replicas=tuple(
                ReplicaInfo(
                    node=v.node,
                    ok=not v.error,
                    fallback=v.fallback,
                    found=v.found,
                    tombstone=v.tombstone,
                    ts=ts_from_pb(v.ts) if v.HasField("ts") else None,
                    error=v.error,
                )
                for v in reply.replicas
            ),
        )

    # ---------------------------------------------------------------- internals

    def _options(
        self,
        r: Level | None,
        w: Level | None,
        preset: str | None,
        sloppy: bool | None,
        read_repair: str | None,
        timeout: float | None,
        trace: bool,
    ) -> pb.Options:
        """The call's options, checked; the same arguments give the same message, kept
        (by value and type, so ``True`` is not taken for ``1``): a client usually makes
        every call at one of a few levels."""
        args: _OptionArgs = (r, w, preset, sloppy, read_repair, timeout, trace)
        try:
            memo_key = tuple((type(a), a) for a in args)
            known = self._options_memo.get(memo_key)
        except TypeError:  # an unhashable argument: invalid, and checked below
            memo_key, known = None, None
        if known is not None:
            return known
        options = self._checked_options(args)
        if memo_key is not None:
            if len(self._options_memo) >= MEMO_LIMIT:
                self._options_memo.clear()
            self._options_memo[memo_key] = options
        return options

    def _checked_options(self, args: _OptionArgs) -> pb.Options:
        r, w, preset, sloppy, read_repair, timeout, trace = args
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise InvalidArgument(f"timeout must be a positive number of seconds, not {timeout!r}")
        timeout_ms = None if timeout is None else max(1, round(timeout * 1000))
        if self.n is not None:
            # Validate now, against the same rules the coordinator applies.
            consistency.resolve(
                consistency.CallOptions(r, w, preset, sloppy, read_repair, timeout_ms),
                consistency.Defaults(self.n, 1, 1, True, "off", 1, max_timeout_ms=1 << 31),
            )
        else:
            for name, level in (("r", r), ("w", w)):
                if level is not None and not isinstance(level, int | str):
                    raise InvalidArgument(f"{name} must be an int or a level name")
        return options_to_pb(
            r=r,
            w=w,
            consistency=preset,
            sloppy=sloppy,
            read_repair=read_repair,
            timeout_ms=timeout_ms,
            trace=trace,
        )

    def _coordinators(self, key: bytes) -> list[str]:
        if self._ring is not None:
            order = self._walks.get(key)
            if order is None:
                if len(self._walks) >= MEMO_LIMIT:
                    self._walks.clear()
                order = self._walks[key] = list(self._ring.walk(key))  # the ring never changes
        else:
            start = next(self._rotation)
            order = list(self.node_ids[start:] + self.node_ids[:start])
        now = _now()
        healthy = [node for node in order if self._skip_until.get(node, 0.0) <= now]
        return healthy + [node for node in order if node not in healthy]

    def _channel(self, node: str) -> grpc.aio.Channel:
        channel = self._channels.get(node)
        if channel is None:
            node_id = node if self._ring is not None else None  # ids known: the ring
            channel = self._channels[node] = self._dialer.aio(self._address_of[node], node_id)
        return channel

    def _stub(self, node: str) -> pb_grpc.KVStub:
        stub = self._stubs.get(node)
        if stub is None:
            stub = self._stubs[node] = pb_grpc.KVStub(self._channel(node))
        return stub

    def _session(self, node: str) -> SessionLink:
        session = self._sessions.get(node)
        if session is None:
            target = f"{node} ({self._address_of[node]})"
            session = self._sessions[node] = SessionLink(target, self._channel(node))
        return session

    async def _send(
        self,
        node: str,
        method: Literal["Put", "Get", "Delete"],
        request: pb.PutRequest | pb.GetRequest | pb.DeleteRequest,
        deadline: float,
    ) -> pb.PutReply | pb.GetReply:
        """One attempt at one coordinator, on this client's transport; raises KVError."""
        if self.transport == "session":
            call = pb.Call()
            getattr(call, method.lower()).CopyFrom(request)
            result = await self._session(node).call(call, deadline)
            return result.get if method == "Get" else result.put
        rpc = getattr(self._stub(node), method)
        try:
            return await rpc(request, timeout=deadline)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"{node} ({self._address_of[node]})") from None

    async def _call(
        self,
        key: bytes,
        method: Literal["Put", "Get", "Delete"],
        request: pb.PutRequest | pb.GetRequest | pb.DeleteRequest,
        timeout: float | None,
    ) -> pb.PutReply | pb.GetReply:
        budget = (timeout if timeout is not None else self.timeout) + DEADLINE_MARGIN_S
        end = _now() + budget
        backoff = OVERLOAD_BACKOFF_S[0]
        while True:
            try:
                return await self._attempt(key, method, request, end - _now())
            except Overloaded:
                pause = backoff * (0.5 + self._rng.random())
                if _now() + pause >= end:
                    raise
                await asyncio.sleep(pause)
                backoff = min(backoff * 2, OVERLOAD_BACKOFF_S[1])

    async def _attempt(
        self,
        key: bytes,
        method: Literal["Put", "Get", "Delete"],
        request: pb.PutRequest | pb.GetRequest | pb.DeleteRequest,
        deadline: float,
    ) -> pb.PutReply | pb.GetReply:
        last: KVError | None = None
        for node in self._coordinators(key):
            try:
                return await self._send(node, method, request, deadline)
            except (CoordinatorUnreachable, CoordinatorRefused) as error:
                if not error.definite:
                    raise
                self._skip_until[node] = _now() + SKIP_UNREACHABLE_S
                last = error
        assert last is not None
        if isinstance(last, CoordinatorRefused):
            raise CoordinatorRefused(
                f"no coordinator took the call (tried {len(self.addresses)}): {last.message}"
            )
        raise CoordinatorUnreachable(
            f"no coordinator reachable (tried {len(self.addresses)}): {last.message}",
            definite=True,
        )


def _now() -> float:
    # the loop's clock (time.monotonic under asyncio; virtual time in the simulator)
    return asyncio.get_running_loop().time()


def _put_result(reply: pb.PutReply) -> PutResult:
    return PutResult(
        ts=ts_from_pb(reply.ts),
        coordinator=reply.coordinator,
        replicas=tuple(
            ReplicaInfo(node=a.node, ok=a.ok, fallback=a.fallback, error=a.error)
            for a in reply.acks
        ),
    )
