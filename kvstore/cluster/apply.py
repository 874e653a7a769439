"""``kvstore cluster apply``: make the running ring the config's, one epoch at a time.

A reconciliation loop: it reads the ring the nodes serve, takes the one step that brings
it closer to the config's membership, and starts over until they are the same. Every
step is decided by Paxos among the current members (``kvstore.core.epochs``), so two
operators, or one killed and run again, finish one change instead of forking it.

Steps (each an epoch):
  stable A  ->  A, target B, write-both: writes reach W in A and in B; reads use A
            ->  (every node confirms it; then the gained ranges stream to B's new
                 replicas, from A's, with their original timestamps)
            ->  A, target B, read-new: reads use B; writes still reach both
            ->  (every node confirms it)
            ->  A, target B, clean-up: reads and writes use B only
            ->  (every node confirms it; then every node drops the keys B does not
                 place on it: old copies go last, once nobody reads or writes them)
            ->  stable B
A node that does not confirm an epoch holds the change (it might still coordinate with
the older one); ``--dead ID`` removes a member that is gone for good: it is never
waited for nor streamed from.

Rules: idempotent (apply twice: nothing to do) and resumable (streams run again
harmlessly: last-writer-wins with original timestamps; a clean-up run again finds
nothing to drop). Refused with the reason: a change other than the one under way, N or
vnodes changed, fewer than N nodes, a range with no live replica.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from rich.console import Console

from kvstore.cluster.admin import SyncAdminClient
from kvstore.cluster.local import LocalCluster
from kvstore.config import ClusterConfig
from kvstore.core.epochs import (
    CLEAN_UP,
    READ_NEW,
    STABLE,
    WRITE_BOTH,
    Decided,
    Learn,
    Proposer,
    Request,
    RingRecord,
)
from kvstore.core.rebalance import PlanRefused, RingSpec, plan
from kvstore.net.channel import Dialer
from kvstore.node.ring_store import configured_ring
from kvstore.pb import kvstore_pb2 as pb

console = Console()

CONFIRM_TIMEOUT_S = 60.0
DECIDE_TIMEOUT_S = 60.0
PULL_BUDGET_S = 5.0


class ApplyError(RuntimeError):
    """The change cannot go on now; the message says what it waits for."""


def record_of(ring: pb.RingView) -> RingRecord | None:
    """The ring record a node reports (None: joining, it has none)."""
    if ring.epoch == 0:
        return None
    target = tuple((m.id, m.address) for m in ring.target) or None
    return RingRecord(
        ring.epoch,
        tuple((m.id, m.address) for m in ring.members),
        ring.n,
        ring.vnodes,
        target,
        ring.phase or STABLE,
    )


@dataclass(slots=True)
class Operator:
    config: ClusterConfig
    dialer: Dialer
    dead: frozenset[str] = frozenset()
    rate_keys_s: float = 0.0
    say: Callable[[str], None] = console.print
    me: str = field(default_factory=lambda: f"op-{uuid.uuid4().hex[:12]}")
    addresses: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.addresses.update({n.id: n.address for n in self.config.nodes})

    def admin(self, node: str) -> SyncAdminClient:
        return SyncAdminClient.at(self.addresses[node], dialer=self.dialer, node_id=node)

    # ----------------------------------------------------------------- reading

    def epochs(self, nodes: list[str]) -> dict[str, RingRecord | str | None]:
        """Each node's ring record (None: joining), or why it did not answer."""
        out: dict[str, RingRecord | str | None] = {}
        for node in nodes:
            try:
                with self.admin(node) as admin:
                    out[node] = record_of(admin.status(timeout=2.0).ring)
            except grpc.RpcError as exc:
                out[node] = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return out

    def current(self) -> RingRecord:
        """The newest ring any node serves (the others learn it as the loop goes on)."""
        seen = self.epochs(list(self.addresses))
        records = [r for r in seen.values() if isinstance(r, RingRecord)]
        if not records:
            raise ApplyError(
                f"no node of cluster {self.config.name!r} answers with a ring: start it first"
            )
        newest = max(records, key=lambda r: r.epoch)
        for m, a in newest.everyone():
            self.addresses.setdefault(m, a)
        return newest

    # --------------------------------------------------------------- deciding

    def send(self, node: str, message: Request) -> object | None:
        try:
            with self.admin(node) as admin:
                return admin.epoch(message)
        except (grpc.RpcError, ValueError):
            return None  # lost: Paxos does not need every answer

    def decide(self, current: RingRecord, wanted: RingRecord) -> Decided:
        proposer = Proposer(self.me, current, wanted)
        deadline = time.monotonic() + DECIDE_TIMEOUT_S
        outbox = proposer.start()
        while proposer.outcome is None:
            if time.monotonic() > deadline:
                raise ApplyError(
                    f"epoch {wanted.epoch} was not decided in {DECIDE_TIMEOUT_S:.0f} s: fewer "
                    f"than a majority of {', '.join(current.ids)} answer"
                )
            if not outbox:
                time.sleep(0.2)
                outbox = proposer.start()
                continue
            node, message = outbox.pop(0)
            reply = self.send(node, message)
            if reply is not None:
                outbox += proposer.on_reply(node, reply)  # type: ignore[arg-type]
        for node, message in outbox:  # the Learns that tell everyone
            self.send(node, message)
        return proposer.outcome

    def confirm(self, record: RingRecord) -> None:
        """Until every live node serves ``record``'s epoch or a later one."""
        nodes = [m for m, _ in record.everyone() if m not in self.dead]
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while True:
            seen = self.epochs(nodes)
            behind = {n: s for n, s in seen.items() if not _at_least(s, record.epoch)}
            if not behind:
                return
            for node, state in behind.items():
                if not isinstance(state, str):
                    self.send(node, Learn(record))  # teach it instead of waiting
            if time.monotonic() > deadline:
                why = "; ".join(f"{n}: {_describe(s)}" for n, s in behind.items())
                raise ApplyError(
                    f"epoch {record.epoch} waits for {why}; a node gone for good is removed "
                    f"with --dead ID"
                )
            time.sleep(0.2)

    # -------------------------------------------------------------- streaming

    def stream(self, record: RingRecord) -> None:
        """Every range the change moves, pulled by its new replicas."""
        assert record.target is not None
        change = plan(_spec(record.members, record), _spec(record.target, record), self.dead)
        for stream, ranges in change.streams().items():
            wire = [(r.start, r.end - 1) for r in ranges]
            after: bytes | None = None
            keys = stored = 0
            began = time.monotonic()
            while True:
                try:
                    with self.admin(stream.target) as admin:
                        got = admin.pull(
                            stream.source,
                            wire,
                            after,
                            rate_keys_s=self.rate_keys_s,
                            budget_s=PULL_BUDGET_S,
                        )
                except grpc.RpcError as exc:
                    why = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                    raise ApplyError(
                        f"streaming {stream.source} -> {stream.target} failed: {why}; run "
                        f"apply again to resume"
                    ) from None
                keys += got.keys
                stored += got.stored
                if not got.HasField("next"):
                    break
                after = got.next
            self.say(
                f"  streamed {stream.source} -> {stream.target}: {len(ranges)} ranges, "
                f"{keys} keys ({stored} new there) in {time.monotonic() - began:.1f} s"
            )

    def clean_up(self, record: RingRecord) -> None:
        """Every live node drops what ``record``'s target ring does not place on it."""
        for node, _ in record.everyone():
            if node in self.dead:
                continue
            try:
                with self.admin(node) as admin:
                    got = admin.clean_up()
            except grpc.RpcError as exc:
                why = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                raise ApplyError(
                    f"clean-up on {node} failed: {why}; run apply again to resume"
                ) from None
            if got.dropped:
                self.say(f"  {node} dropped {got.dropped} of {got.scanned} keys it no longer owns")

    # ------------------------------------------------------------------- loop

    def step(self, record: RingRecord, desired: RingRecord) -> RingRecord | None:
        """The next epoch toward ``desired`` (decided), or None when it is reached."""
        e = record.epoch
        if record.phase == STABLE:
            if _shape(record.members) == _shape(desired.members):
                return None
            # checks the change before anything is decided (raises PlanRefused)
            plan(_spec(record.members, record), _spec(desired.members, desired), self.dead)
            wanted = RingRecord(
                e + 1, record.members, record.n, record.vnodes, desired.members, WRITE_BOTH
            )
        else:
            if _shape(record.target or ()) != _shape(desired.members):
                raise PlanRefused(
                    f"a change to {', '.join(record.target_ids)} is under way (epoch {e}, "
                    f"{record.phase}): finish it with that membership before another"
                )
            self.confirm(record)
            if record.phase == WRITE_BOTH:
                self.stream(record)
                wanted = RingRecord(
                    e + 1, record.members, record.n, record.vnodes, record.target, READ_NEW
                )
            elif record.phase == READ_NEW:
                wanted = RingRecord(
                    e + 1, record.members, record.n, record.vnodes, record.target, CLEAN_UP
                )
            else:
                assert record.target is not None
                self.clean_up(record)
                wanted = RingRecord(e + 1, record.target, record.n, record.vnodes)
        decided = self.decide(record, wanted)
        if not decided.ours:
            self.say(f"epoch {decided.ring.epoch} was decided by another operator: following it")
        return decided.ring

    def run(self, desired: RingRecord, start_new: Callable[[str], None] | None) -> RingRecord:
        record = self.current()
        while True:
            if record.phase == STABLE and _shape(record.members) != _shape(desired.members):
                for node in desired.ids:
                    if node not in record.ids and start_new is not None:
                        start_new(node)
            nxt = self.step(record, desired)
            if nxt is None:
                self.confirm(record)
                return record
            self.say(f"epoch {nxt.epoch}: {_phase(nxt)}")
            record = nxt


def _at_least(state: RingRecord | str | None, epoch: int) -> bool:
    return isinstance(state, RingRecord) and state.epoch >= epoch


def _describe(state: RingRecord | str | None) -> str:
    if isinstance(state, RingRecord):
        return f"still at epoch {state.epoch}"
    return "joining, no ring yet" if state is None else f"does not answer ({state})"


def _shape(members: tuple[tuple[str, str], ...]) -> list[str]:
    return sorted(m for m, _ in members)


def _spec(members: tuple[tuple[str, str], ...], record: RingRecord) -> RingSpec:
    return RingSpec(tuple(m for m, _ in members), record.n, record.vnodes)


def _phase(record: RingRecord) -> str:
    if record.phase == STABLE:
        return f"stable on {', '.join(record.ids)}"
    verb = {
        WRITE_BOTH: "writes to both rings",
        READ_NEW: "reads from the new ring",
        CLEAN_UP: "the new ring only, old copies dropped",
    }[record.phase]
    return f"{verb} ({', '.join(record.ids)} -> {', '.join(record.target_ids)})"


def run_apply(
    config: ClusterConfig,
    local: LocalCluster | None,
    dialer: Dialer,
    *,
    dead: list[str],
    rate_keys_s: float = 0.0,
) -> int:
    """The CLI's entry: 0 done (or nothing to do), 1 refused or waiting on something."""
    desired = configured_ring(config)  # only its members, N and vnodes are used
    operator = Operator(config, dialer, frozenset(dead), rate_keys_s)

    def start_new(node: str) -> None:
        if local is None:
            return
        state = operator.epochs([node])[node]
        if isinstance(state, str):  # not running: a local node we start, joining
            console.print(f"starting {node} (joining)")
            local.start_node(node, join=True)

    try:
        final = operator.run(desired, start_new)
    except (ApplyError, PlanRefused) as exc:
        console.print(f"[red]kvstore cluster apply: {exc}[/red]")
        return 1
    if local is not None:
        for node in list(local.nodes):
            if node not in final.ids and node not in dead:
                console.print(f"stopping {node}: no longer a member")
                local.stop_node(node)
    console.print(f"done: epoch {final.epoch}, {', '.join(final.ids)}")
    return 0
