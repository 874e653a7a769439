"""The membership operator: make the ring the nodes serve a desired one, one epoch at a
time. ``kvstore cluster apply`` runs it over gRPC; the harness's membership nemesis runs
it on real processes and in the simulator (``Nodes`` is all it needs from a cluster).

A reconciliation loop: it reads the ring the nodes serve, takes the one step that brings
it closer to the desired membership, and starts over until they are the same. Every
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
the older one); a member in ``dead`` is gone for good: it is never waited for nor
streamed from.

Rules: idempotent (run twice: nothing to do) and resumable (streams run again
harmlessly: last-writer-wins with original timestamps; a clean-up run again finds
nothing to drop). Refused with the reason (``PlanRefused``): a change other than the
one under way, N or vnodes changed, fewer than N nodes, a range with no live replica.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from kvstore.core.epochs import (
    CLEAN_UP,
    READ_NEW,
    STABLE,
    WRITE_BOTH,
    Decided,
    Learn,
    Proposer,
    Reply,
    Request,
    RingRecord,
)
from kvstore.core.rebalance import PlanRefused, Range, RingSpec, Stream, plan

CONFIRM_TIMEOUT_S = 60.0
DECIDE_TIMEOUT_S = 60.0
PULL_BUDGET_S = 5.0
RETRY_S = 0.2
# Streams pulled at once. On 2 cores, 4 at once streamed 21.4k keys/s against 20.0k for
# one, and made the p99 of client calls during the change 141 ms against 22 ms
# (bench/membership.py): the work is CPU-bound, so one at a time is the default.
PARALLEL_STREAMS = 1


class ApplyError(RuntimeError):
    """The change cannot go on now; the message says what it waits for."""


class NodeCallFailed(Exception):
    """A call to one node failed or was not answered; the message says why."""


@dataclass(frozen=True, slots=True)
class PullStep:
    keys: int
    stored: int  # newer than what the target held
    next: bytes | None  # where to resume; None: done


class Nodes(Protocol):
    """What the operator asks of a cluster's nodes; each call raises ``NodeCallFailed``."""

    async def ring(self, node: str) -> RingRecord | None:
        """The ring record ``node`` serves (None: joining, it has none)."""
        ...

    async def epoch(self, node: str, message: Request) -> Reply: ...

    async def pull(
        self,
        target: str,
        source: str,
        ranges: list[tuple[int, int]],
        after: bytes | None,
        rate_keys_s: float,
        budget_s: float,
    ) -> PullStep: ...

    async def clean_up(self, node: str) -> tuple[int, int]:
        """(scanned, dropped)."""
        ...

    def know(self, record: RingRecord) -> None:
        """Addresses of every node ``record`` names (leaving ones are in no config)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def now(self) -> float: ...


@dataclass(slots=True)
class Operator:
    nodes: Nodes
    known: list[str]  # nodes to ask for the ring first (the config's)
    dead: frozenset[str] = frozenset()
    rate_keys_s: float = 0.0  # per stream
    say: Callable[[str], None] = print
    parallel: int = PARALLEL_STREAMS
    # told after every pull step: the stream, its keys so far, whether it is done
    progress: Callable[[Stream, int, bool], None] | None = None
    me: str = field(default_factory=lambda: f"op-{uuid.uuid4().hex[:12]}")

    # ----------------------------------------------------------------- reading

    async def epochs(self, nodes: list[str]) -> dict[str, RingRecord | str | None]:
        """Each node's ring record (None: joining), or why it did not answer."""
        out: dict[str, RingRecord | str | None] = {}
        for node in nodes:
            try:
                out[node] = await self.nodes.ring(node)
            except NodeCallFailed as exc:
                out[node] = str(exc)
        return out

    async def current(self) -> RingRecord:
        """The newest ring any node serves (the others learn it as the loop goes on)."""
        seen = await self.epochs(self.known)
        records = [r for r in seen.values() if isinstance(r, RingRecord)]
        if not records:
            raise ApplyError(f"no node of {', '.join(self.known)} answers with a ring")
        newest = max(records, key=lambda r: r.epoch)
        self.nodes.know(newest)
        return newest

    # --------------------------------------------------------------- deciding

    async def send(self, node: str, message: Request) -> Reply | None:
        try:
            return await self.nodes.epoch(node, message)
        except NodeCallFailed:
            return None  # lost: Paxos does not need every answer

    async def decide(self, current: RingRecord, wanted: RingRecord) -> Decided:
        proposer = Proposer(self.me, current, wanted)
        deadline = self.nodes.now() + DECIDE_TIMEOUT_S
        outbox = proposer.start()
        while proposer.outcome is None:
            if self.nodes.now() > deadline:
                raise ApplyError(
                    f"epoch {wanted.epoch} was not decided in {DECIDE_TIMEOUT_S:.0f} s: fewer "
                    f"than a majority of {', '.join(current.ids)} answer"
                )
            if not outbox:
                await self.nodes.sleep(RETRY_S)
                outbox = proposer.start()
                continue
            node, message = outbox.pop(0)
            reply = await self.send(node, message)
            if reply is not None:
                outbox += proposer.on_reply(node, reply)
        for node, message in outbox:  # the Learns that tell everyone
            await self.send(node, message)
        return proposer.outcome

    async def confirm(self, record: RingRecord) -> None:
        """Until every live node serves ``record``'s epoch or a later one."""
        nodes = [m for m, _ in record.everyone() if m not in self.dead]
        deadline = self.nodes.now() + CONFIRM_TIMEOUT_S
        while True:
            seen = await self.epochs(nodes)
            behind = {n: s for n, s in seen.items() if not _at_least(s, record.epoch)}
            if not behind:
                return
            for node, state in behind.items():
                if not isinstance(state, str):
                    await self.send(node, Learn(record))  # teach it instead of waiting
            if self.nodes.now() > deadline:
                why = "; ".join(f"{n}: {_describe(s)}" for n, s in behind.items())
                raise ApplyError(
                    f"epoch {record.epoch} waits for {why}; a node gone for good is removed "
                    f"with --dead ID"
                )
            await self.nodes.sleep(RETRY_S)

    # -------------------------------------------------------------- streaming

    async def stream(self, record: RingRecord) -> None:
        """Every range the change moves, pulled by its new replicas, ``parallel`` pairs
        (source, target) at a time; the first failure stops the rest."""
        assert record.target is not None
        change = plan(_spec(record.members, record), _spec(record.target, record), self.dead)
        slots = asyncio.Semaphore(self.parallel)

        async def one(stream: Stream, ranges: list[Range]) -> None:
            async with slots:
                await self._pull_stream(stream, ranges)

        tasks = [asyncio.ensure_future(one(s, r)) for s, r in change.streams().items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pull_stream(self, stream: Stream, ranges: list[Range]) -> None:
        wire = [(r.start, r.end - 1) for r in ranges]
        after: bytes | None = None
        keys = stored = 0
        began = self.nodes.now()
        while True:
            try:
                got = await self.nodes.pull(
                    stream.target, stream.source, wire, after, self.rate_keys_s, PULL_BUDGET_S
                )
            except NodeCallFailed as exc:
                raise ApplyError(
                    f"streaming {stream.source} -> {stream.target} failed: {exc}; run "
                    f"apply again to resume"
                ) from None
            keys += got.keys
            stored += got.stored
            if self.progress is not None:
                self.progress(stream, keys, got.next is None)
            if got.next is None:
                break
            after = got.next
        self.say(
            f"  streamed {stream.source} -> {stream.target}: {len(ranges)} ranges, "
            f"{keys} keys ({stored} new there) in {self.nodes.now() - began:.1f} s"
        )

    async def clean_up(self, record: RingRecord) -> None:
        """Every live node drops what ``record``'s target ring does not place on it."""
        for node, _ in record.everyone():
            if node in self.dead:
                continue
            try:
                scanned, dropped = await self.nodes.clean_up(node)
            except NodeCallFailed as exc:
                raise ApplyError(
                    f"clean-up on {node} failed: {exc}; run apply again to resume"
                ) from None
            if dropped:
                self.say(f"  {node} dropped {dropped} of {scanned} keys it no longer owns")

    # ------------------------------------------------------------------- loop

    async def step(self, record: RingRecord, desired: RingRecord) -> RingRecord | None:
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
            await self.confirm(record)
            if record.phase == WRITE_BOTH:
                await self.stream(record)
                wanted = RingRecord(
                    e + 1, record.members, record.n, record.vnodes, record.target, READ_NEW
                )
            elif record.phase == READ_NEW:
                wanted = RingRecord(
                    e + 1, record.members, record.n, record.vnodes, record.target, CLEAN_UP
                )
            else:
                assert record.target is not None
                await self.clean_up(record)
                wanted = RingRecord(e + 1, record.target, record.n, record.vnodes)
        decided = await self.decide(record, wanted)
        if not decided.ours:
            self.say(f"epoch {decided.ring.epoch} was decided by another operator: following it")
        return decided.ring

    async def run(
        self, desired: RingRecord, start_new: Callable[[str], Awaitable[None]] | None = None
    ) -> RingRecord:
        record = await self.current()
        while True:
            if record.phase == STABLE and _shape(record.members) != _shape(desired.members):
                for node in desired.ids:
                    if node not in record.ids and start_new is not None:
                        await start_new(node)
            nxt = await self.step(record, desired)
            if nxt is None:
                await self.confirm(record)
                return record
            self.say(f"epoch {nxt.epoch}: {describe_phase(nxt)}")
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


def describe_phase(record: RingRecord) -> str:
    if record.phase == STABLE:
        return f"stable on {', '.join(record.ids)}"
    verb = {
        WRITE_BOTH: "writes to both rings",
        READ_NEW: "reads from the new ring",
        CLEAN_UP: "the new ring only, old copies dropped",
    }[record.phase]
    return f"{verb} ({', '.join(record.ids)} -> {', '.join(record.target_ids)})"
