"""The simulated network: node-to-node links and client calls, all in virtual time.

Rules and invariants:
- Every message takes a latency drawn from its link's distribution (a per-link base
  plus an exponential tail, from the run's seeded generator), so messages on one link
  can overtake each other (reordering) as they can over real TCP retransmits.
- Faults are per directed link: ``cut`` (the message is lost, a one-way partition; cut
  both ways for a two-way one), ``drop`` (a fraction lost), ``duplicate`` (a fraction
  delivered twice) and ``delay`` (added latency). Node-to-node traffic only: clients
  always reach every node, as in ``kvstore test``.
- A message is handled in the receiver's process (its incarnation's context): a paused
  node handles it on resume; a message for a node that crashed meanwhile is lost.
- A link keeps the transport contract (``kvstore.net.link``): a request to a node that
  is down fails at once, not sent (a refused connection); a crash of the receiver fails
  the requests it had, as sent (a reset stream), unless the link is cut; everything
  else ends with a reply or at the request's deadline.
- With ``trace`` on, every send, delivery and loss is logged as one line (virtual time,
  event, from, to, op): the run folder's ``network.trace``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvstore.net import replica_codec
from kvstore.net.link import Heard, Link, PeerError, reply_error

Handler = Callable[[list[list[Any]], Callable[[list[Any]], None]], None]

BASE_LATENCY_S = (0.0002, 0.0010)  # each link's own floor, drawn once per run
TAIL_MEAN_S = 0.0003  # the mean of the exponential part of every message's latency
MAX_LATENCY_S = 0.05


@dataclass(slots=True)
class LinkFaults:
    cut: bool = False
    drop: float = 0.0
    duplicate: float = 0.0
    delay_s: float = 0.0


@dataclass(slots=True)
class Endpoint:
    """One running node incarnation, as the network sees it."""

    process: str
    context: contextvars.Context
    handler: Handler


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    timer: asyncio.TimerHandle
    served: Callable[[float], None] | None


class SimNetwork:
    def __init__(self, rng: random.Random, nodes: list[str], *, trace: bool = False) -> None:
        self.rng = rng
        self.nodes = list(nodes)
        self.endpoints: dict[str, Endpoint] = {}
        self.base = {
            (a, b): rng.uniform(*BASE_LATENCY_S) for a in self.nodes for b in self.nodes if a != b
        }
        self.faults: dict[tuple[str, str], LinkFaults] = {}
        self.links: list[SimLink] = []
        # (time, event, from, to, what): formatted only when a seed's folder is kept
        self.trace: list[tuple[float, str, str, str, object]] | None = [] if trace else None
        self.sent = 0
        self.lost = 0

    def add_node(self, node: str) -> None:
        """A new machine on the network, with its own base latencies to every other."""
        for other in self.nodes:
            self.base[(node, other)] = self.rng.uniform(*BASE_LATENCY_S)
            self.base[(other, node)] = self.rng.uniform(*BASE_LATENCY_S)
        self.nodes.append(node)

    # ------------------------------------------------------------- faults

    def link_faults(self, src: str, dst: str) -> LinkFaults:
        faults = self.faults.get((src, dst))
        if faults is None:
            faults = self.faults[(src, dst)] = LinkFaults()
        return faults

    def heal(self) -> None:
        self.faults = {}

    def latency(self, src: str, dst: str) -> float:
        base = self.base.get((src, dst), BASE_LATENCY_S[0])
        extra = self.faults[(src, dst)].delay_s if (src, dst) in self.faults else 0.0
        return min(base + self.rng.expovariate(1 / TAIL_MEAN_S), MAX_LATENCY_S) + extra

    def _copies(self, src: str, dst: str) -> int:
        """How many copies of one message arrive: 0 (lost), 1, or 2 (duplicated)."""
        faults = self.faults.get((src, dst))
        if faults is None:
            return 1
        if faults.cut or (faults.drop > 0 and self.rng.random() < faults.drop):
            return 0
        if faults.duplicate > 0 and self.rng.random() < faults.duplicate:
            return 2
        return 1

    def _trace(self, event: str, src: str, dst: str, what: object) -> None:
        if self.trace is not None:
            self.trace.append((asyncio.get_running_loop().time(), event, src, dst, what))

    def trace_lines(self) -> list[str]:
        """The trace as text: ``<virtual time> <event> <from>-><to> <what>`` per line."""
        return [f"{t:.6f} {e} {a}->{b} {w}" for t, e, a, b, w in self.trace or []]

    # ------------------------------------------------------------- nodes

    def attach(
        self, node: str, process: str, context: contextvars.Context, handler: Handler
    ) -> None:
        self.endpoints[node] = Endpoint(process, context, handler)

    def detach(self, node: str) -> None:
        """``node`` crashed: links to it see their streams reset (unless cut)."""
        self.endpoints.pop(node, None)
        for link in self.links:
            if link.src == node:
                link.closed = True  # its memory is gone: nobody waits on its requests
        self.links = [link for link in self.links if link.src != node]
        for link in self.links:
            if link.dst == node and not self.link_faults(node, link.src).cut:
                link.fail_all(f"stream to {node} broke: the node went away", sent=True)

    def transport(self, node: str, context: contextvars.Context, max_pending: int) -> SimTransport:
        return SimTransport(self, node, context, max_pending)

    # ---------------------------------------------------------- delivery

    def send(
        self,
        src: str,
        dst: str,
        message: list[Any],
        on_reply: Callable[[list[Any]], None],
        reply_context: contextvars.Context,
    ) -> None:
        """Carry one request to ``dst``; its replies come back through ``on_reply``."""
        self.sent += 1
        endpoint = self.endpoints.get(dst)
        copies = self._copies(src, dst)
        op = message[1] if len(message) > 1 else "?"
        if endpoint is None or copies == 0:
            self.lost += 1
            self._trace("lost", src, dst, op)
            return
        self._trace("send", src, dst, op)
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            loop.call_later(
                self.latency(src, dst),
                self._arrive,
                src,
                dst,
                endpoint.process,
                message,
                on_reply,
                reply_context,
                context=endpoint.context,
            )

    def _arrive(
        self,
        src: str,
        dst: str,
        process: str,
        message: list[Any],
        on_reply: Callable[[list[Any]], None],
        reply_context: contextvars.Context,
    ) -> None:
        endpoint = self.endpoints.get(dst)
        if endpoint is None or endpoint.process != process:
            self._trace("lost", src, dst, "receiver crashed")
            return
        loop = asyncio.get_running_loop()

        def reply(answer: list[Any]) -> None:
            if self._copies(dst, src) == 0:
                self.lost += 1
                self._trace("lost", dst, src, "reply")
                return
            loop.call_later(self.latency(dst, src), on_reply, answer, context=reply_context)

        endpoint.handler([message], reply)


class SimTransport:
    def __init__(
        self, network: SimNetwork, node: str, context: contextvars.Context, max_pending: int
    ) -> None:
        self.network = network
        self.node = node
        self.context = context
        self.max_pending = max_pending

    def link(self, peer_id: str, address: str, on_heard: Heard) -> Link:
        link = SimLink(self.network, self.node, peer_id, self.context, on_heard, self.max_pending)
        self.network.links.append(link)
        return link


@dataclass(slots=True, eq=False)
class SimLink:
    network: SimNetwork
    src: str
    dst: str
    context: contextvars.Context
    on_heard: Heard
    max_pending: int
    frames_sent: int = 0
    messages_sent: int = 0
    refused_full: int = 0
    closed: bool = False
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def request(
        self, body: list[Any], timeout_s: float, served: Callable[[float], None] | None = None
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed:
            future.set_exception(PeerError(f"link to {self.dst} is closed", sent=False))
            return future
        if self.dst not in self.network.endpoints:
            future.set_exception(PeerError(f"cannot connect to {self.dst}", sent=False))
            return future
        if len(self._pending) >= self.max_pending:
            self.refused_full += 1
            future.set_exception(
                PeerError(f"{self.dst} has {len(self._pending)} requests unanswered", sent=False)
            )
            return future
        rid = next(self._ids)
        timer = loop.call_later(timeout_s, self._expire, rid)
        self._pending[rid] = _Pending(future, timer, served)
        self.frames_sent += 1
        self.messages_sent += 1
        self.network.send(self.src, self.dst, [rid, *body], self._dispatch, self.context)
        return future

    def _expire(self, rid: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is not None and not entry.future.done():
            entry.future.set_exception(PeerError(f"{self.dst} did not answer in time", sent=True))

    def _dispatch(self, reply: list[Any]) -> None:
        fields = replica_codec.reply_fields(reply)
        self.on_heard(self.dst, None if fields is None else fields[4])
        if fields is None:
            return
        rid, status, result, service_s, epoch = fields
        entry = self._pending.pop(rid, None)
        if entry is None:
            return  # expired already, or a duplicate's second answer
        entry.timer.cancel()
        if entry.future.done():
            return
        if status == replica_codec.OK:
            if entry.served is not None and service_s is not None:
                entry.served(service_s)
            entry.future.set_result(result)
        else:
            entry.future.set_exception(reply_error(self.dst, status, result, epoch))

    def fail_all(self, why: str, *, sent: bool) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.timer.cancel()
            if not entry.future.done():
                entry.future.set_exception(PeerError(why, sent=sent))
                # Its callbacks run in the requester's process, which may die before
                # they do (two nodes killed at once): not a bug worth a warning.
                entry.future.exception()

    async def close(self) -> None:
        self.closed = True
        self.fail_all(f"link to {self.dst} closed", sent=True)
