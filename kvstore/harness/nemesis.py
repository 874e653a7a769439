"""Nemeses: faults injected into a running cluster, each small and combinable.

Rules and invariants:
- A nemesis acts through a ``kvstore.harness.control.Control``: the same nemesis runs
  against real processes (``LocalControl``) and in the simulator (``SimControl``).
- Every nemesis has ``start`` (inject) and ``heal`` (undo); ``heal`` is idempotent and
  the runner calls it for every nemesis at the end, whatever happened, so a run always
  ends with every node running, resumed, connected and on a true clock.
- On real processes, kill and pause are real signals (SIGKILL then restart; SIGSTOP
  then SIGCONT). partition uses iptables DROP rules between network namespaces when the nodes
  run in them (``kvstore.cluster.netns``, root only), else each node's gRPC seam; clock
  and the seam partitions go through ``Admin.SetFaults`` (no root needed); a node's
  fault state is kept here and pushed whole, so a partition and a clock skew on the same
  node do not undo each other.
- Randomness comes from the runner's seeded ``random.Random``: a seed replays the
  same fault schedule.
- Partitions cut node-to-node traffic only; clients still reach every node (a client
  talking to a minority node sees its requests fail or time out, as in Jepsen).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from kvstore.cluster.netns import NetnsNetwork
from kvstore.cluster.operator import ApplyError, Operator
from kvstore.core.epochs import RingRecord
from kvstore.core.rebalance import PlanRefused
from kvstore.harness.control import Control, NodeFaults

__all__ = ["NEMESES", "FaultState", "Nemesis", "NodeFaults", "build", "parse_nemeses"]

NEMESES = (
    "none",
    "kill",
    "pause",
    "partition",
    "clock",
    "delay",
    "drop",
    "lying-disk",
    "hint-loss",
    "membership",
)
PARTITION_KINDS = ("halves", "one", "majorities-ring", "bridge")


class FaultState:
    """What each node's seam should be doing; pushed whole on every change."""

    def __init__(self, control: Control, network: NetnsNetwork | None = None) -> None:
        self.control = control
        self.network = network  # real partitions (iptables) when nodes run in namespaces
        self.nodes = {n: NodeFaults() for n in control.node_ids}

    async def push(self, node: str) -> None:
        await self.control.set_faults(node, self.nodes[node])

    async def push_all(self) -> None:
        await asyncio.gather(*(self.push(n) for n in self.nodes))

    def add(self, node: str) -> None:
        """A brand-new machine: no faults yet, the run's planted bugs like every node."""
        planted = next(iter(self.nodes.values())).planted if self.nodes else ()
        self.nodes.setdefault(node, NodeFaults(planted=planted))


class Nemesis:
    name = "none"

    def __init__(self, control: Control, faults: FaultState, rng: random.Random) -> None:
        self.control = control
        self.faults = faults
        self.rng = rng

    @property
    def nodes(self) -> list[str]:
        """The machines the run uses now (the membership nemesis replaces one by a
        brand-new machine at times): the control's own list, shared by every nemesis."""
        return self.control.node_ids

    async def start(self) -> dict[str, Any]:
        """Inject the fault; returns a description for the history."""
        return {}

    async def heal(self) -> dict[str, Any]:
        return {}

    def _some(self, low: int, high: int) -> list[str]:
        return sorted(self.rng.sample(self.nodes, self.rng.randint(low, high)))


class KillNemesis(Nemesis):
    """SIGKILL one or two nodes; heal restarts them."""

    name = "kill"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.killed: list[str] = []

    async def start(self) -> dict[str, Any]:
        self.killed = self._some(1, 2)
        for node in self.killed:
            await self.control.kill(node)
        return {"killed": self.killed}

    async def heal(self) -> dict[str, Any]:
        restarted, self.killed = self.killed, []
        for node in restarted:
            await self.control.restart(node)
            await self.faults.push(node)  # a restarted node forgets its faults
        return {"restarted": restarted}


class PauseNemesis(Nemesis):
    """SIGSTOP one or two nodes; heal sends SIGCONT."""

    name = "pause"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.paused: list[str] = []

    async def start(self) -> dict[str, Any]:
        self.paused = self._some(1, 2)
        for node in self.paused:
            await self.control.pause(node)
        return {"paused": self.paused}

    async def heal(self) -> dict[str, Any]:
        resumed, self.paused = self.paused, []
        for node in resumed:
            await self.control.resume(node)
        return {"resumed": resumed}


def partition_groups(kind: str, nodes: list[str], rng: random.Random) -> dict[str, set[str]]:
    """For each node, the nodes it can still reach (itself included)."""
    order = list(nodes)
    rng.shuffle(order)
    count = len(order)
    if kind == "halves":
        cut = count // 2
        sides = [set(order[:cut]), set(order[cut:])]
        return {n: next(s for s in sides if n in s) for n in order}
    if kind == "one":
        lonely = order[0]
        rest = set(order[1:])
        return {n: ({lonely} if n == lonely else rest) for n in order}
    if kind == "majorities-ring":
        # each node sees its ring neighbours: a majority, but a different one for each
        reach = count // 2
        return {
            n: {order[(i + d) % count] for d in range(-reach // 2 - reach % 2, reach // 2 + 1)}
            | {n}
            for i, n in enumerate(order)
        }
    if kind == "bridge":
        cut = count // 2
        left, bridge, right = set(order[:cut]), order[cut], set(order[cut + 1 :])
        groups = {n: left | {bridge} for n in left}
        groups.update({n: right | {bridge} for n in right})
        groups[bridge] = set(order)
        return groups
    raise ValueError(f"unknown partition {kind!r}; choose from {', '.join(PARTITION_KINDS)}")


class PartitionNemesis(Nemesis):
    """Cut node-to-node traffic into a Jepsen-style partition at the gRPC seam."""

    name = "partition"

    async def start(self) -> dict[str, Any]:
        kind = self.rng.choice(PARTITION_KINDS)
        groups = partition_groups(kind, self.nodes, self.rng)
        network = self.faults.network
        if network is not None:
            for node, reach in groups.items():
                await asyncio.to_thread(network.cut, node, set(self.nodes) - reach)
        else:
            for node, reach in groups.items():
                self.faults.nodes[node].isolated = set(self.nodes) - reach
            await self.faults.push_all()
        return {
            "partition": kind,
            "mechanism": "netns-iptables" if network is not None else "grpc-seam",
            "cut": {n: sorted(set(self.nodes) - r) for n, r in groups.items()},
        }

    async def heal(self) -> dict[str, Any]:
        if self.faults.network is not None:
            await asyncio.to_thread(self.faults.network.heal)
        for state in self.faults.nodes.values():
            state.isolated = set()
        await self.faults.push_all()
        return {"partition": "healed"}


class ClockNemesis(Nemesis):
    """Skew one or two nodes' hybrid-clock source by up to a few seconds either way."""

    name = "clock"

    async def start(self) -> dict[str, Any]:
        skewed = {}
        for node in self._some(1, 2):
            offset = self.rng.choice((-1, 1)) * self.rng.randint(200, 5000)
            self.faults.nodes[node].clock_offset_ms = offset
            skewed[node] = offset
            await self.faults.push(node)
        return {"clock_offset_ms": skewed}

    async def heal(self) -> dict[str, Any]:
        for state in self.faults.nodes.values():
            state.clock_offset_ms = 0
        await self.faults.push_all()
        return {"clock": "reset"}


class DelayNemesis(Nemesis):
    """Slow one or two nodes' outgoing replica traffic by 20-400 ms (a congested link;
    at the gRPC seam, since ``tc netem`` is missing on these machines)."""

    name = "delay"

    async def start(self) -> dict[str, Any]:
        slowed = {}
        for node in self._some(1, 2):
            delay = self.rng.randint(20, 400)
            self.faults.nodes[node].delay_ms = delay
            slowed[node] = delay
            await self.faults.push(node)
        return {"delay_ms": slowed}

    async def heal(self) -> dict[str, Any]:
        for state in self.faults.nodes.values():
            state.delay_ms = 0
        await self.faults.push_all()
        return {"delay": "removed"}


class DropNemesis(Nemesis):
    """One or two nodes lose 10-60% of their outgoing replica messages (a lossy link);
    a lost request is never answered, so its caller waits for its deadline."""

    name = "drop"

    async def start(self) -> dict[str, Any]:
        lossy = {}
        for node in self._some(1, 2):
            fraction = round(self.rng.uniform(0.1, 0.6), 2)
            self.faults.nodes[node].drop = fraction
            lossy[node] = fraction
            await self.faults.push(node)
        return {"drop": lossy}

    async def heal(self) -> dict[str, Any]:
        for state in self.faults.nodes.values():
            state.drop = 0.0
        await self.faults.push_all()
        return {"drop": "none"}


class LyingDiskNemesis(Nemesis):
    """One node's disk lies about fsync (acks writes it holds in memory), while the node
    is cut off from its peers, so what it acknowledges lives on it alone; heal crashes
    it (SIGKILL: the lie is found out, those writes are gone) and restarts it.
    Run with W=1 to see acknowledged writes lost (the ``set`` workload shows them)."""

    name = "lying-disk"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.liar: str | None = None

    async def start(self) -> dict[str, Any]:
        liar = self.rng.choice(self.nodes)
        self.liar = liar
        others = set(self.nodes) - {liar}
        self.faults.nodes[liar].lying_disk = True
        self.faults.nodes[liar].isolated |= others
        for node in others:
            self.faults.nodes[node].isolated.add(liar)
        await self.faults.push_all()
        return {"lying": liar, "isolated": liar}

    async def heal(self) -> dict[str, Any]:
        liar, self.liar = self.liar, None
        if liar is None:
            return {}
        await self.control.kill(liar)  # the unsynced writes die here
        for node, state in self.faults.nodes.items():
            state.isolated.discard(liar)
            if node == liar:
                state.isolated = set()
                state.lying_disk = False
        await self.control.restart(liar)
        await self.faults.push_all()
        return {"crashed_and_restarted": liar}


class HintLossNemesis(Nemesis):
    """SIGKILL one node while every other node loses the hints it takes for it (a hint
    store that fails); heal restarts it. Writes it missed reach it only through
    anti-entropy: the run's repair round must do real work, and convergence shows
    whether it did."""

    name = "hint-loss"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.killed: str | None = None

    async def start(self) -> dict[str, Any]:
        self.killed = self.rng.choice(self.nodes)
        for node, state in self.faults.nodes.items():
            state.lose_hints = node != self.killed
        await asyncio.gather(*(self.faults.push(n) for n in self.nodes if n != self.killed))
        await self.control.kill(self.killed)
        return {"killed": self.killed, "hints_lost_by": "every other node"}

    async def heal(self) -> dict[str, Any]:
        restarted, self.killed = self.killed, None
        for state in self.faults.nodes.values():
            state.lose_hints = False
        if restarted is not None:
            await self.control.restart(restarted)
        await self.faults.push_all()
        return {"restarted": restarted}


class MembershipNemesis(Nemesis):
    """Take a node out of the ring while the load runs, through every epoch of
    ``kvstore.cluster.operator`` (as ``kvstore cluster apply`` does), in one of three
    ways: a live node (its ranges stream away, old copies are dropped, then it stops), a
    dead one (killed first, removed with ``dead``: its ranges merge every survivor's
    copy), or a live one whose operator is killed mid-change (a new operator finishes
    the job). Heal adds a node back, joining: the removed one wiped, or (half the time,
    where the control makes machines: the simulator) a brand-new machine with a new id,
    the removed one retired for good. A change that cannot finish (its error is in the
    history) is finished by the next heal."""

    name = "membership"
    WAYS = ("live", "dead", "operator-killed")
    FRESH_MACHINE = 0.5  # a heal adds a brand-new machine (where the control can make one)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.removed: str | None = None  # out of the ring and stopped: heal adds it back
        self.stopped: str | None = None  # killed, still a member (its removal failed)
        self.addresses: dict[str, str] = {}

    def _operator(self, said: list[str], dead: frozenset[str] = frozenset()) -> Operator:
        return Operator(self.control.operator_nodes(), list(self.nodes), dead, say=said.append)

    async def _change(
        self, leave_out: str | None, way: str = "live", cut_after_s: float = 0.0
    ) -> dict[str, Any]:
        said: list[str] = []
        dead = frozenset({leave_out}) if way == "dead" and leave_out else frozenset()
        interrupted = False
        try:
            current = await self._operator(said).current()
            self.addresses.update(current.everyone())
            members = tuple((m, self.addresses[m]) for m in self.nodes if m != leave_out)
            desired = RingRecord(1, members, current.n, current.vnodes)
            if way == "operator-killed":
                first = asyncio.ensure_future(self._operator(said).run(desired))
                done, _ = await asyncio.wait([first], timeout=cut_after_s)
                if not done:
                    first.cancel()  # the operator dies here; a new one finishes the change
                    await asyncio.gather(first, return_exceptions=True)
                    said.append(f"operator killed after {cut_after_s:.2f} s")
                    interrupted = True
            final = await self._operator(said, dead).run(desired)
        except (ApplyError, PlanRefused) as exc:
            return {"error": str(exc), "steps": said}
        return {"epoch": final.epoch, "steps": len(said), "operator_killed": interrupted}

    async def start(self) -> dict[str, Any]:
        node = self.rng.choice(self.nodes)
        way = self.rng.choice(self.WAYS)
        cut = self.rng.uniform(0.0, 0.05)
        if way == "dead":
            await self.control.kill(node)
        detail = await self._change(node, way, cut)
        if "error" in detail:  # still a member: never wiped (its copies may be needed)
            self.stopped = node if way == "dead" else None
            return {"removing": node, "way": way, **detail}
        self.removed = node
        if way != "dead":
            await self.control.kill(node)  # no longer a member: its ranges live elsewhere
        return {"removed": node, "way": way, **detail}

    async def heal(self) -> dict[str, Any]:
        added, self.removed = self.removed, None
        restarted, self.stopped = self.stopped, None
        retired = None
        if added is not None:
            machine = None
            if self.rng.random() < self.FRESH_MACHINE:
                machine = await self.control.new_machine()
            if machine is None:
                await self.control.join(added)
            else:  # the removed node is retired; a brand-new machine takes its place
                retired, (added, self.addresses[added]) = added, machine
                self.nodes[self.nodes.index(retired)] = added
                self.faults.add(added)
            await self.faults.push(added)
        if restarted is not None:
            await self.control.restart(restarted)
            await self.faults.push(restarted)
        detail = {"added": added, "restarted": restarted, **await self._change(None)}
        return {**detail, "retired": retired} if retired else detail


_KINDS: dict[str, Callable[..., Nemesis]] = {
    "membership": MembershipNemesis,
    "hint-loss": HintLossNemesis,
    "lying-disk": LyingDiskNemesis,
    "kill": KillNemesis,
    "pause": PauseNemesis,
    "partition": PartitionNemesis,
    "clock": ClockNemesis,
    "delay": DelayNemesis,
    "drop": DropNemesis,
}


# The default for the linearizable level: every fault that leaves a write applied on some
# replicas and not others while reads go on (cut links, crashes, stalls, slow links, and
# skewed clocks, which ABD's first round must overcome).
LINEARIZABLE_NEMESES = ("partition", "kill", "pause", "delay", "clock")


def parse_nemeses(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in NEMESES]
    if unknown:
        raise ValueError(f"unknown nemesis {unknown[0]!r}; choose from {', '.join(NEMESES)}")
    return [n for n in names if n != "none"]


def build(
    names: list[str], control: Control, faults: FaultState, rng: random.Random
) -> list[Nemesis]:
    return [_KINDS[name](control, faults, rng) for name in names]
