"""Anti-entropy: replicas compare Merkle trees and copy only the versions that differ.

The exchange, from the node that starts it (the *initiator*) with one peer:
  1. Both sides make a tree over the keys they both replicate (both are among the key's
     N primaries), at a depth the initiator picks; ``ae.open`` makes the peer make its
     tree and returns its root. When both engines keep digests (``kvstore.core.digests``)
     the tree is summed from them, reading only the few buckets that straddle a shared
     range's edge (a *digest* session); otherwise both scan their stores and hash every
     entry (``kvstore.core.merkle``, a *full* session). The initiator asks for digests;
     the peer's reply says which it made, and the initiator makes the same kind.
  2. ``TopDown`` walks both trees from the root, asking the peer (``ae.hashes``) only for
     nodes under hashes that differ, several levels per round trip.
  3. For the differing leaves the peer sends its (key, timestamp, tombstone) entries
     (``ae.leaves``), never values; ``reconcile`` says, per key, which side is newer.
     A digest session reads those entries from the store by token range, so a round
     costs in proportion to what differs, not to what is stored.
  4. Newer versions travel both ways: fetched with ``ae.get`` and applied locally, or sent
     with ``ae.put`` and applied by the peer. ``ae.close`` frees the peer's tree.

Rules and invariants:
- Applying goes through the engine's last-writer-wins ``apply_many`` with the original
  timestamps, so repair is idempotent and can never replace a newer version with an
  older one, whatever was written while it ran.
- Tombstones are records and are repaired like values, so a replica that missed a
  delete gets the tombstone: what keeps a purged key from coming back, provided a repair
  round runs within the grace period (Cassandra's rule). Tombstones older than the
  grace period (the *cutoff*, fixed by the initiator for both sides) are invisible to
  the exchange: they are due to be purged and must not be copied back.
- Tombstones are purged by each node on its own once ``ts.wall`` is older than
  ``tombstone_grace_s`` (``Engine.purge_tombstones``).
- A peer that does not answer a ping within ``PROBE_TIMEOUT_S`` is skipped (an error in
  the report), so a partitioned or paused peer costs a round seconds, not the minute an
  ``ae.open`` may take.
- One repair at a time per node (scheduled and on-demand share a lock); a peer keeps at
  most ``MAX_SESSIONS`` trees for initiators, oldest dropped first, so a crashed
  initiator cannot make it hoard memory.
- Messages stay under ``CHUNK_BYTES`` (records) or ``CHUNK_ITEMS`` (hashes, leaves) so
  one exchange never sends a frame near gRPC's message limit.
- Everything a peer sends is validated (``kvstore.core.peer_input``): session ids,
  levels and indexes as bounded integers, keys, records and entries field by field,
  and the records it makes this replica store also for clock drift. A bad message
  fails that exchange alone.
- Counters (in ``Node.counters``): ``ae.exchanges`` (rounds this node initiated),
  ``ae.digest_exchanges`` (those whose trees were summed from digests, not scanned),
  ``ae.keys_repaired`` (records this node stored because of repair), ``ae.bytes_sent``
  (msgpack bytes of anti-entropy messages this node sent, requests and replies),
  ``ae.errors``, ``tombstones.purged``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from kvstore.core import digests, merkle
from kvstore.core.digests import DigestTree
from kvstore.core.merkle import Entry, HashTree, MerkleTree, TopDown
from kvstore.core.peer_input import PeerInputError, PeerLimits, fields, integer
from kvstore.core.ring import Ring, token
from kvstore.core.version import Record, Timestamp
from kvstore.node.ae_wire import (
    Call,
    PeerRound,
    RepairReport,
    chunks_by_bytes,
    chunks_by_count,
    decode_entry,
    decode_full,
    encode_entry,
    encode_full,
    gather_limited,
    permissive_limits,
    wire_size,
)
from kvstore.node.clock import on_thread
from kvstore.storage.base import Engine

if TYPE_CHECKING:
    from kvstore.node.runtime import Node

log = logging.getLogger("kvstore.antientropy")

STEP = 4  # tree levels descended per round trip
CHUNK_ITEMS = 4096  # hashes or leaves per message
CHUNK_BYTES = 256 * 1024  # record bytes per message
PARALLEL = 4  # chunk messages in flight per exchange
MAX_SESSIONS = 8
OPEN_TIMEOUT_S = 60.0  # the peer scans its store and builds a tree
PROBE_TIMEOUT_S = 2.0  # a peer that does not answer a ping this fast is skipped
TIMEOUT_S = 30.0

entry_of = merkle.entry_of


@dataclass(slots=True)
class Session:
    """What a peer keeps for one initiator's exchange.

    A full session's ``MerkleTree`` holds the entries in its leaves; a digest session's
    ``DigestTree`` does not, and its leaves' entries are read from the store.
    """

    tree: MerkleTree | DigestTree
    initiator: str
    cutoff_us: int


class Replica:
    """One replica's side of anti-entropy: serves peers' exchanges and starts its own.

    Knows nothing of the network: the responder ops take and return msgpack-able lists,
    and ``exchange`` reaches its peer through a ``Call``; the node wires both to its
    replica streams, a benchmark can wire two replicas together in one process.
    """

    def __init__(
        self,
        node_id: str,
        engine: Engine,
        ring: Ring,
        n: int,
        counters: collections.Counter[str] | None = None,
        observe: Callable[[Timestamp], None] | None = None,
        limits: PeerLimits | None = None,
        offload: Callable[..., Awaitable[Any]] = on_thread,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.id = node_id
        self._offload = offload  # Merkle trees: a thread in production, inline in simulation
        self._now = now
        self.limits = limits or permissive_limits(ring)
        self.engine = engine
        self.ring = ring
        self.n = n
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        self._observe = observe
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._ids = itertools.count(1)

    def ops(self) -> dict[str, Callable[[list[Any]], Awaitable[Any]]]:
        """The replica message handlers, by op name (for ``Node.replica_ops``)."""
        return {
            "ae.open": self._sent(self.op_open),
            "ae.hashes": self._sent(self.op_hashes),
            "ae.leaves": self._sent(self.op_leaves),
            "ae.get": self._sent(self.op_get),
            "ae.put": self._sent(self.op_put),
            "ae.close": self._sent(self.op_close),
        }

    def _sent(
        self, handler: Callable[[list[Any]], Awaitable[Any]]
    ) -> Callable[[list[Any]], Awaitable[Any]]:
        async def counted(args: list[Any]) -> Any:
            result = await handler(args)
            self.counters["ae.bytes_sent"] += wire_size(result)
            return result

        return counted

    # ------------------------------------------------------------------ local data

    async def shared_entries(self, peers: Sequence[str], cutoff_us: int) -> dict[str, list[Entry]]:
        """For each peer, the entries of keys both replicate (one scan of the store)."""
        live = merkle.is_live(cutoff_us)
        entries: list[Entry] = []
        async for record in self.engine.scan():
            entry = entry_of(record)
            if live(entry):
                entries.append(entry)
        return merkle.split_by_peer(self.ring, self.id, self.n, peers, entries)

    def can_digest(self, depth: int) -> bool:
        index = self.engine.digests
        return index is not None and 1 <= depth <= index.depth

    def _pair_buckets(self, peer: str, depth: int) -> tuple[list[range], list[int]]:
        """(buckets wholly shared with ``peer``, buckets cut by a shared range's edge)."""
        return digests.classify(digests.shared_ranges(self.ring, self.n, self.id, peer), depth)

    async def _shared_in(self, peer: str, buckets: Iterable[int], depth: int) -> list[Entry]:
        """Entries of some boundary buckets whose keys ``peer`` shares."""
        found = await self.engine.entries_in(digests.ranges_of(buckets, depth))
        return [e for e in found if merkle.shared(self.ring, e.key, self.n, self.id, peer)]

    async def digest_tree(self, peer: str, depth: int) -> DigestTree:
        """The tree of the keys shared with ``peer``, summed from the engine's digests."""
        index = self.engine.digests
        assert index is not None
        inside, boundary = self._pair_buckets(peer, depth)
        edge = {b: np.zeros(2, dtype=np.uint64) for b in boundary}
        shift = merkle.TOKEN_BITS - depth
        for entry in await self._shared_in(peer, boundary, depth):
            edge[token(entry.key) >> shift] += digests.lanes_of(entry)
        # at_depth copies: a snapshot while the writer thread moves the digests
        leaves = digests.leaf_values(index.at_depth(depth), inside, edge, depth)
        return DigestTree(depth, leaves, index.entries, boundary)

    async def leaf_entries(
        self, peer: str, cutoff_us: int, leaves: Sequence[int], tree: DigestTree
    ) -> list[Entry]:
        """The stored entries of some leaves that ``peer`` shares, past tombstones hidden."""
        live = merkle.is_live(cutoff_us)
        edges, depth = tree.edges, tree.depth
        # Keys of a bucket wholly inside the shared ranges are shared: only edges are sorted.
        inner = [b for b in leaves if b not in edges]
        found = await self.engine.entries_in(digests.ranges_of(inner, depth))
        found += await self._shared_in(peer, [b for b in leaves if b in edges], depth)
        return [e for e in found if live(e)]

    async def _store(self, records: list[Record]) -> int:
        if not records:
            return 0
        if self._observe is not None:
            for record in records:
                self._observe(record.ts)  # refuses (raises) a timestamp far ahead
        stored = sum(await self.engine.apply_many(records))
        self.counters["ae.keys_repaired"] += stored
        return stored

    # ---------------------------------------------------------------- responder ops

    async def op_open(self, args: list[Any]) -> list[Any]:
        if not isinstance(args, list) or len(args) not in (4, 5):
            raise PeerInputError("ae.open takes 4 or 5 fields")
        session, initiator, depth, cutoff_us = args[:4]
        want_digests = args[4] if len(args) == 5 else False
        if type(want_digests) is not bool:
            raise PeerInputError("ae.open: the digests flag must be a boolean")
        if not isinstance(session, str) or len(session) > 128:
            raise PeerInputError("ae.open: the session id must be a short string")
        initiator = self.limits.node(initiator, "ae.open initiator")
        depth = integer(depth, "ae.open depth", 0, merkle.MAX_DEPTH)
        cutoff_us = integer(cutoff_us, "ae.open cutoff", -(1 << 63), (1 << 63) - 1)
        if want_digests:
            if not self.can_digest(depth):
                return [b"", 0, False]  # no index like that here: the initiator scans instead
            digest = await self.digest_tree(initiator, depth)
            self._keep(session, Session(digest, initiator, cutoff_us))
            return [digest.root, digest.count, True]
        entries = (await self.shared_entries([initiator], cutoff_us))[initiator]
        # Hashing 100k entries takes a while: off the loop, so heartbeats keep flowing.
        full = await self._offload(MerkleTree, depth, entries)
        self._keep(session, Session(full, initiator, cutoff_us))
        return [full.root, full.count, False]

    def _keep(self, session: str, kept: Session) -> None:
        self._sessions[session] = kept
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)

    def _session(self, session: object) -> Session:
        found = self._sessions.get(str(session))
        if found is None:
            raise LookupError(f"no anti-entropy session {session!r} (expired?)")
        return found

    def _indexes(self, tree: HashTree, level: int, raw: object) -> list[int]:
        if not isinstance(raw, list) or len(raw) > CHUNK_ITEMS:
            raise PeerInputError(f"indexes must be a list of at most {CHUNK_ITEMS}")
        top = (1 << level) - 1
        return [integer(i, "index", 0, top) for i in raw]

    async def op_hashes(self, args: list[Any]) -> list[bytes]:
        session, level, indexes = fields(args, 3, "ae.hashes")
        tree = self._session(session).tree
        level = integer(level, "ae.hashes level", 0, tree.depth)
        return tree.hashes(level, self._indexes(tree, level, indexes))

    async def op_leaves(self, args: list[Any]) -> list[list[Any]]:
        session, indexes = fields(args, 2, "ae.leaves")
        found = self._session(session)
        wanted = self._indexes(found.tree, found.tree.depth, indexes)
        if isinstance(found.tree, MerkleTree):
            return [encode_entry(e) for i in wanted for e in found.tree.leaf(i)]
        entries = await self.leaf_entries(found.initiator, found.cutoff_us, wanted, found.tree)
        return [encode_entry(e) for e in entries]

    async def op_get(self, args: list[Any]) -> list[list[Any]]:
        (keys,) = fields(args, 1, "ae.get")
        records = await self.engine.get_many(self.limits.keys(keys, CHUNK_ITEMS))
        return [encode_full(r) for r in records if r is not None]

    async def op_put(self, args: list[Any]) -> int:
        (raw,) = fields(args, 1, "ae.put")
        if not isinstance(raw, list) or len(raw) > CHUNK_ITEMS:
            raise PeerInputError(f"ae.put takes a list of at most {CHUNK_ITEMS} records")
        return await self._store([decode_full(r, self.limits) for r in raw])

    async def op_close(self, args: list[Any]) -> None:
        (session,) = fields(args, 1, "ae.close")
        if isinstance(session, str):
            self._sessions.pop(session, None)

    # ------------------------------------------------------------------- initiator

    async def exchange(
        self,
        peer: str,
        call: Call,
        entries: list[Entry] | None,
        cutoff_us: int,
        depth: int | None = None,
    ) -> PeerRound:
        """One exchange with ``peer`` over the keys both replicate.

        ``entries`` are this side's (from ``shared_entries``) for a full session; None
        asks for a digest session, falling back to a scan when either side has no index.
        """
        result = PeerRound(peer)
        began = self._now()

        async def counted(op: str, args: list[Any]) -> Any:
            sent = wire_size([op, *args])
            result.bytes_sent += sent
            self.counters["ae.bytes_sent"] += sent
            reply = await call(op, args)
            result.bytes_received += wire_size(reply)
            result.round_trips += 1
            return reply

        session = f"{self.id}:{next(self._ids)}"
        index = self.engine.digests
        tree: MerkleTree | DigestTree
        if entries is None and index is not None:
            depth = index.tree_depth()
            reply = await counted("ae.open", [session, self.id, depth, cutoff_us, True])
            if len(reply) > 2 and reply[2] is True:
                root = reply[0]
                tree = await self.digest_tree(peer, depth)
                result.digests = True
            else:  # the peer has no index that deep and kept no session: scan, both
                session = f"{self.id}:{next(self._ids)}"
                depth = None
        if not result.digests:
            if entries is None:
                entries = (await self.shared_entries([peer], cutoff_us))[peer]
            if depth is None:
                depth = merkle.depth_for(len(entries))
            # Both sides build their trees at once: the peer while it serves ae.open.
            building = asyncio.ensure_future(self._offload(MerkleTree, depth, entries))
            try:
                reply = await counted("ae.open", [session, self.id, depth, cutoff_us])
            except BaseException:
                building.cancel()
                raise
            root = reply[0]
            tree = await building
        try:
            walk = TopDown(tree, STEP)
            walk.receive([root])
            while (ask := walk.request()) is not None:
                level, indexes = ask
                parts = await gather_limited(
                    [
                        partial(counted, "ae.hashes", [session, level, list(part)])
                        for part in chunks_by_count(indexes, CHUNK_ITEMS)
                    ],
                    PARALLEL,
                )
                walk.receive([h for part in parts for h in part])
            result.leaves_differing = len(walk.leaves)
            result.hashes_compared = walk.compared
            if walk.leaves:
                if isinstance(tree, MerkleTree):
                    mine = [e for leaf in walk.leaves for e in tree.leaf(leaf)]
                    theirs = await self._their_leaves(session, walk.leaves, counted)
                else:  # both stores read the leaves at once
                    mine, theirs = await asyncio.gather(
                        self.leaf_entries(peer, cutoff_us, walk.leaves, tree),
                        self._their_leaves(session, walk.leaves, counted),
                    )
                await self._reconcile(mine, theirs, counted, result)
        finally:
            try:
                await counted("ae.close", [session])
            except Exception:  # the peer drops old sessions on its own
                log.debug("ae.close to %s failed", peer, exc_info=True)
        result.seconds = self._now() - began
        self.counters["ae.exchanges"] += 1
        if result.digests:
            self.counters["ae.digest_exchanges"] += 1
        return result

    async def _their_leaves(self, session: str, leaves: list[int], counted: Call) -> list[Entry]:
        parts = await gather_limited(
            [
                partial(counted, "ae.leaves", [session, list(part)])
                for part in chunks_by_count(leaves, CHUNK_ITEMS // 16)
            ],
            PARALLEL,
        )
        return [decode_entry(raw, self.limits) for part in parts for raw in part]

    async def _reconcile(
        self, mine: list[Entry], theirs: list[Entry], counted: Call, result: PeerRound
    ) -> None:
        pull, push = merkle.reconcile(mine, theirs)

        async def fetch() -> None:
            fetched = await gather_limited(
                [partial(counted, "ae.get", [list(part)]) for part in chunks_by_count(pull, 1024)],
                PARALLEL,
            )
            records = [decode_full(raw, self.limits) for part in fetched for raw in part]
            result.keys_pulled = await self._store(records)

        async def send() -> None:
            mine_now = [r for r in await self.engine.get_many(push) if r is not None]
            stored = await gather_limited(
                [
                    partial(counted, "ae.put", [[encode_full(r) for r in part]])
                    for part in chunks_by_bytes(mine_now, CHUNK_BYTES)
                ],
                PARALLEL,
            )
            result.keys_pushed = sum(int(s) for s in stored)

        # Pulling and pushing touch different keys (each key travels one way): at once.
        await asyncio.gather(*([fetch()] if pull else []), *([send()] if push else []))


class AntiEntropy:
    """Anti-entropy and tombstone purging for one node: scheduled and on demand."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.replica = Replica(
            node.id,
            node.engine,
            node.ring,
            node.config.n,
            node.counters,
            observe=node.observe_peer_ts,
            limits=node.limits,
            offload=node.offload,
            now=node.time.monotonic,
        )
        self._lock = asyncio.Lock()
        node.ring_listeners.append(self._ring_changed)
        node.replica_ops.update(self.replica.ops())
        node.services.append(self._purge_loop)
        if node.config.anti_entropy_interval_s > 0:
            node.services.append(self._repair_loop)

    @property
    def grace_us(self) -> int:
        return int(self.node.config.tombstone_grace_s * 1_000_000)

    def _ring_changed(self) -> None:
        # trees are built per exchange, so the next one simply uses the new ring
        self.replica.ring = self.node.ring
        self.replica.limits = self.node.limits

    def peers(self) -> list[str]:
        if self.node.placement is None:
            return []  # joining: it shares nothing yet
        return merkle.sharing_peers(self.node.ring, self.node.id, self.node.config.n)

    async def repair(self, peers: Sequence[str] | None = None) -> RepairReport:
        """One round: an exchange with every peer sharing ranges (or the given ones)."""
        async with self._lock:
            report = RepairReport(self.node.id)
            targets = [p for p in self.peers() if peers is None or p in peers]
            if not targets:
                return report
            # tombstone_grace_s = inf (left out, anti-entropy off): no tombstone is ever due
            never = self.node.config.tombstone_grace_s == float("inf")
            cutoff = 0 if never else self.node.physical_us() - self.grace_us
            # With digests the trees need no scan; without, one scan serves every peer.
            entries: dict[str, list[Entry] | None] = dict.fromkeys(targets)
            if self.node.engine.digests is None:
                entries.update(await self.replica.shared_entries(targets, cutoff))
            for peer in targets:
                link = self.node.links[peer]

                async def call(op: str, args: list[Any], link: Any = link) -> Any:
                    timeout = OPEN_TIMEOUT_S if op == "ae.open" else TIMEOUT_S
                    return await link.request([op, *args], timeout)

                try:
                    # A peer cut off or stopped would hold the round (and the lock every
                    # other round waits on) for OPEN_TIMEOUT_S: ask it first, briefly.
                    await link.request(["p", self.node.id], PROBE_TIMEOUT_S)
                    report.rounds.append(
                        await self.replica.exchange(peer, call, entries[peer], cutoff)
                    )
                except Exception as exc:
                    self.node.counters["ae.errors"] += 1
                    report.rounds.append(PeerRound(peer, error=str(exc) or type(exc).__name__))
            return report

    async def purge(self) -> int:
        if self.node.config.tombstone_grace_s == float("inf"):
            return 0  # left out with anti-entropy off: tombstones are never purged
        purged = await self.node.engine.purge_tombstones(self.node.physical_us() - self.grace_us)
        self.node.counters["tombstones.purged"] += purged
        return purged

    async def _purge_loop(self) -> None:
        # Often enough that a tombstone outlives its grace period by a small fraction of it.
        every = min(max(self.node.config.tombstone_grace_s / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(every)
            try:
                await self.purge()
            except Exception:  # a failed purge is retried next tick
                log.exception("purging tombstones failed")

    async def _repair_loop(self) -> None:
        interval = self.node.config.anti_entropy_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                up = [p for p in self.peers() if p not in self.node.down()]
                report = await self.repair(up)
                if report.keys_repaired or report.errors:
                    log.info(
                        "anti-entropy: %d keys repaired, %d exchanges, errors: %s",
                        report.keys_repaired,
                        report.exchanges,
                        report.errors or "none",
                    )
            except Exception:
                log.exception("scheduled anti-entropy round failed")
